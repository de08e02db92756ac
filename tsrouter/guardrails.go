package tsrouter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// Guardrails in the pipeline: the input stage checks the texts of a
// request before its tier is admitted, the output stage the serve's reply
// before the caller sees it, and a streamed answer goes through a gate
// (guard.Gate) delta by delta. With [guardrails] off, none of this runs:
// each stage is one nil check.

// SetGuardrails replaces the guardrails engine (SIGHUP reload); nil turns
// them off.
func (h *Handler) SetGuardrails(e *guard.Engine) { h.guard.Store(e) }

// guardrails returns the engine when it does anything, else nil.
func (h *Handler) guardrails() *guard.Engine {
	if e := h.guard.Load(); e.Enabled() {
		return e
	}
	return nil
}

// guardExtra is the providers the caller's grants and key add.
func guardExtra(rec *record) []string {
	if rec.principal == nil {
		return nil
	}
	return rec.principal.GuardrailNames()
}

// checkGuardrailNames refuses a caller whose grants or key name a
// guardrail provider that is not configured (with guardrails on; off, the
// names mean nothing and are ignored).
func (h *Handler) checkGuardrailNames(rec *record) error {
	names := guardExtra(rec)
	if len(names) == 0 {
		return nil
	}
	e := h.guardrails()
	if e == nil {
		return nil
	}
	if n, bad := e.Unknown(names); bad {
		return errUnknownGuardrail(n).withDetail("grant or key names guardrail " + strconv.Quote(n) + ", not in [guardrails]")
	}
	return nil
}

// guardNote is what a request's record says of its guardrail verdicts:
// provider, stage, verdict, category and entity counts, never text.
type guardNote struct {
	verdicts []string       // "pii-redaction:input:transform:pii"
	entities map[string]int // email: 2
}

func (n *guardNote) add(stage guard.Stage, res *guard.Result) {
	if res == nil {
		return
	}
	for _, v := range res.Verdicts {
		s := v.Provider + ":" + stage.String() + ":" + v.Action.String()
		if v.Category != "" {
			s += ":" + v.Category
		}
		if v.Err != nil {
			s += ":error"
		}
		n.verdicts = append(n.verdicts, s)
	}
	for k, c := range res.Entities {
		if n.entities == nil {
			n.entities = map[string]int{}
		}
		n.entities[k] += c
	}
}

func (n *guardNote) verdictList() []string {
	if n == nil {
		return nil
	}
	return n.verdicts
}

func (n *guardNote) entityCounts() map[string]int {
	if n == nil {
		return nil
	}
	return n.entities
}

// String is the audit line's field: verdicts, then entity counts.
func (n *guardNote) String() string {
	if n == nil || len(n.verdicts) == 0 {
		return ""
	}
	s := strings.Join(n.verdicts, ",")
	if len(n.entities) > 0 {
		keys := make([]string, 0, len(n.entities))
		for k := range n.entities {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(k + "=" + strconv.Itoa(n.entities[k]))
		}
		s += " entities=" + b.String()
	}
	return s
}

// guardNote returns the record's guardrail note, made on first use.
func (rec *record) guardNote() *guardNote {
	if rec.guard == nil {
		rec.guard = &guardNote{}
	}
	return rec.guard
}

// guardBlocked records a refusal of stage and returns the caller's
// error: 400 guardrail_blocked for a judgement of the text, 503
// guardrail_unavailable when a fail_closed provider failed and nothing
// was judged — unless it failed because the caller went away mid-check.
func guardBlocked(ctx context.Context, rec *record, stage guard.Stage, res *guard.Result) error {
	b := res.Refusal()
	if b.Unavailable && ctx.Err() != nil {
		rec.decide("client_disconnected", "error")
		rec.detail = "client disconnected during the " + stage.String() + " guardrail check"
		return backends.ErrClientGone
	}
	recordRefusal(rec, stage.String(), "", b)
	if b.Unavailable {
		return errGuardUnavailable(b.Provider)
	}
	return errGuardBlocked(b.Provider, b.Category, b.Message)
}

// recordRefusal is the decision and audit detail of a guardrail refusal
// of stage; mid is "" or " mid-stream".
func recordRefusal(rec *record, stage, mid string, b *guard.BlockError) {
	if b.Unavailable {
		rec.decide("guardrail_unavailable", "error")
		rec.detail = stage + " check failed" + mid + ": guardrail " + b.Provider + " unavailable (fail_closed)"
		if b.Cause != nil {
			rec.detail += ": " + b.Cause.Error()
		}
		return
	}
	rec.decide("guardrail_blocked", "blocked")
	rec.detail = stage + " blocked" + mid + " by guardrail " + b.Provider + " (category " + b.Category + ")"
}

// guardFailure is the decision reason and outcome of a guardrail stage's
// error, for paths (audio) that record their own decision.
func guardFailure(err error) (reason, outcome string) {
	var ae *apiError
	if errors.As(err, &ae) {
		switch ae.kind {
		case kindGuardBlocked:
			return "guardrail_blocked", "blocked"
		case kindGuardUnavailable:
			return "guardrail_unavailable", "error"
		}
	}
	return "guardrail_error", "error"
}

// inputStage checks the request's texts; a transform rewrites the body
// that will be sent (q.native on a passthrough, q.chat otherwise).
func (h *Handler) inputStage(ctx context.Context, rec *record, q *inference, a *callerAPI) error {
	e := h.guardrails()
	if e == nil {
		return nil
	}
	extra := guardExtra(rec)
	if !e.Active(guard.Input, extra) {
		return nil
	}
	obj := q.chat
	tops := chatTextKeys
	if q.passthrough && a.native == "anthropic" && q.native != nil {
		obj, tops = q.native, anthropicTextKeys
	}
	jt, err := extractTexts(obj, tops)
	if err != nil {
		return nil // the body was validated; nothing to check
	}
	c := &guard.Content{Stage: guard.Input, Texts: jt.texts, Model: q.alias}
	res, err := e.Check(ctx, guard.Input, c, extra)
	if err != nil {
		return err
	}
	rec.guardNote().add(guard.Input, res)
	if res.Blocked() {
		return guardBlocked(ctx, rec, guard.Input, res)
	}
	q.guardConv = jt.texts
	if !res.Rewritten() {
		return nil
	}
	q.guardConv = slices.Clone(jt.texts)
	for i := range q.guardConv {
		q.guardConv[i].Text = res.Texts[i]
	}
	out, err := jt.rewrite(obj, res.Texts)
	if err != nil {
		return errInternal.withDetail("guardrails: could not rewrite the request")
	}
	nobj, err := jsonobj.Parse(out)
	if err != nil {
		return errInternal.withDetail("guardrails: rewritten request is not an object")
	}
	switch {
	case obj == q.chat && q.native == q.chat:
		q.chat, q.native = nobj, nobj
	case obj == q.chat:
		q.chat = nobj
	default:
		q.native = nobj
	}
	return nil
}

// outputReply checks a whole (non-streamed) serve reply, in the serve's
// form, before it is turned into the caller's.
func (h *Handler) outputReply(ctx context.Context, rec *record, q *inference, body []byte, anthropic bool) ([]byte, error) {
	e := h.guardrails()
	if e == nil {
		return body, nil
	}
	extra := guardExtra(rec)
	if !e.Active(guard.Output, extra) {
		return body, nil
	}
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return body, nil
	}
	tops := replyTextKeys
	if anthropic {
		tops = anthropicReplyKeys
	}
	jt, err := extractTexts(obj, tops)
	if err != nil {
		return body, nil
	}
	conv := h.conversation(q)
	c := &guard.Content{Stage: guard.Output, Texts: append(conv, jt.texts...), Answer: len(conv), Model: q.alias}
	res, err := e.Check(ctx, guard.Output, c, extra)
	if err != nil {
		return nil, err
	}
	rec.guardNote().add(guard.Output, res)
	if res.Blocked() {
		return nil, guardBlocked(ctx, rec, guard.Output, res)
	}
	if !res.Rewritten() {
		return body, nil
	}
	out, err := jt.rewrite(obj, res.Texts[len(conv):])
	if err != nil {
		return nil, errInternal.withDetail("guardrails: could not rewrite the reply")
	}
	return out, nil
}

// conversation is the request's texts, the context of an output check.
func (h *Handler) conversation(q *inference) []guard.Text {
	if q.guardConv != nil {
		return q.guardConv
	}
	if q.chat == nil {
		return nil
	}
	jt, err := extractTexts(q.chat, chatTextKeys)
	if err != nil {
		return nil
	}
	return jt.texts
}

// The top-level members whose strings are text a guardrail checks.
var (
	chatTextKeys       = []string{"messages", "prompt", "suffix", "input"}
	anthropicTextKeys  = []string{"system", "messages"}
	replyTextKeys      = []string{"choices"}
	anthropicReplyKeys = []string{"content"}
)

// nonTextKeys are members whose string values are not text: roles, ids,
// types, names, media (base64, URLs), signatures.
var nonTextKeys = map[string]bool{
	"role": true, "type": true, "id": true, "tool_call_id": true, "tool_use_id": true, "name": true,
	"model": true, "media_type": true, "url": true, "data": true, "image_url": true, "detail": true,
	"signature": true, "finish_reason": true, "stop_reason": true, "object": true, "cache_control": true,
	"format": true, "file_id": true, "file_data": true, "filename": true, "input_audio": true, "source": true,
	"logprobs": true, "index": true, "status": true, "call_id": true,
}

// jsonTexts are the texts of a JSON body and where they are, so a
// transform can be written back.
type jsonTexts struct {
	trees map[string][]any
	texts []guard.Text
	sets  []func(string)
}

// extractTexts collects the strings under the top-level members tops.
func extractTexts(obj *jsonobj.Object, tops []string) (*jsonTexts, error) {
	jt := &jsonTexts{trees: map[string][]any{}}
	for _, top := range tops {
		raw := obj.Get(top)
		if raw == nil {
			continue
		}
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return nil, err
		}
		kind := guard.KindMessage
		switch top {
		case "system":
			kind = guard.KindSystem
		case "input", "prompt", "suffix":
			kind = guard.KindInput
		}
		box := []any{v}
		jt.walk(box, 0, "", kind)
		jt.trees[top] = box
	}
	return jt, nil
}

// walk visits parent[idx] (a slice or map element) with the role and kind
// of its context.
func (jt *jsonTexts) walk(v any, key any, role string, kind guard.Kind) {
	var cur any
	var set func(any)
	switch p := v.(type) {
	case []any:
		i := key.(int)
		cur, set = p[i], func(x any) { p[i] = x }
	case map[string]any:
		k := key.(string)
		cur, set = p[k], func(x any) { p[k] = x }
	}
	switch x := cur.(type) {
	case string:
		jt.texts = append(jt.texts, guard.Text{Role: role, Kind: kind, Text: x})
		jt.sets = append(jt.sets, func(s string) { set(s) })
	case []any:
		for i := range x {
			jt.walk(x, i, role, kind)
		}
	case map[string]any:
		if r, ok := x["role"].(string); ok {
			role = r
			if r == "system" || r == "developer" {
				kind = guard.KindSystem
			} else if r == "tool" {
				kind = guard.KindToolResult
			}
		}
		switch x["type"] {
		case "tool_result", "function_call_output":
			kind = guard.KindToolResult
		case "tool_use", "function_call":
			kind = guard.KindToolArgs
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			if !nonTextKeys[k] {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			kk := kind
			switch k {
			case "arguments", "input", "partial_json":
				if kind != guard.KindToolResult {
					kk = guard.KindToolArgs
				}
			}
			jt.walk(x, k, role, kk)
		}
	}
}

// rewrite writes texts back (one per extracted text) and returns the body.
func (jt *jsonTexts) rewrite(obj *jsonobj.Object, texts []string) ([]byte, error) {
	if len(texts) != len(jt.sets) {
		return nil, errors.New("guardrails: text count changed")
	}
	for i, s := range texts {
		jt.sets[i](s)
	}
	var e jsonobj.Edit
	for top, t := range jt.trees {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(t[0]); err != nil {
			return nil, err
		}
		e.Set(top, bytes.TrimRight(b.Bytes(), "\n"))
	}
	return obj.Apply(&e), nil
}

// NewGuardrails builds the engine of a [guardrails] table for this
// handler: its verdicts feed the handler's metrics, and a guard model is
// reached through the handler's tiers. getenv reads a webhook's secret.
func (h *Handler) NewGuardrails(cfg guard.Config, getenv func(string) string) (*guard.Engine, error) {
	return guard.New(cfg, guard.Deps{
		Chat:      h.guardChat,
		Getenv:    getenv,
		Transport: h.upstreamTransport,
		Observe: func(provider string, stage guard.Stage, v guard.Verdict, err error, took time.Duration) {
			h.metrics.ObserveGuardrail(provider, stage.String(), v.Action.String(), v.Category, took)
		},
	})
}

// ApplyGuardrails puts a [guardrails] table in force: its engine when the
// table is enabled, none when it is not. Every program that builds a
// handler from a config (anvil-router serve, anvil-bench's router child)
// calls this one function, so a table means the same thing in each. An
// engine that does not build is returned as the error and changes nothing.
func (h *Handler) ApplyGuardrails(cfg guard.Config, getenv func(string) string) error {
	if !cfg.Enabled {
		h.SetGuardrails(nil)
		return nil
	}
	eng, err := h.NewGuardrails(cfg, getenv)
	if err != nil {
		return err
	}
	h.SetGuardrails(eng)
	return nil
}

// heldTierKey marks a context whose request holds a lease of a tier.
type heldTierKey struct{}

// withHeldTier returns ctx marked as holding a lease of tier.
func withHeldTier(ctx context.Context, tier *backends.Tier) context.Context {
	return context.WithValue(ctx, heldTierKey{}, tier)
}

// guardChat sends an OpenAI Chat body to the tier of alias (a guard
// model is served like any other model on this host) and returns the
// reply as OpenAI Chat JSON. The call is admitted like a caller's request
// (readiness, quiesce, max_concurrency, queue_timeout): guard checks
// cannot overrun the guard serve, and a tier that refuses is a provider
// error, decided by the provider's on_error. An output check on the tier
// the request itself holds a lease of runs under that lease.
func (h *Handler) guardChat(ctx context.Context, alias string, body []byte) ([]byte, error) {
	tier, ok := h.backends.Lookup(backends.NormalizeAlias(alias))
	if !ok {
		return nil, errors.New("guard model alias " + strconv.Quote(alias) + " is not configured")
	}
	if held, _ := ctx.Value(heldTierKey{}).(*backends.Tier); held != tier {
		lease, err := tier.Admit(ctx)
		if err != nil {
			return nil, err
		}
		defer lease.Release()
	}
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return nil, err
	}
	if tier.Dialect != "anthropic" {
		up, _, err := tier.PrepareOpenAI(obj)
		if err != nil {
			return nil, err
		}
		reply, err := tier.Complete(ctx, up)
		if err != nil {
			return nil, err
		}
		return reply.Body, nil
	}
	up, _, err := tier.PrepareForTranslation(obj)
	if err != nil {
		return nil, err
	}
	msg, info, err := dialect.OpenAIToAnthropic(up, dialect.ToAnthropicOptions{})
	if err != nil {
		return nil, err
	}
	reply, err := tier.Complete(ctx, tier.ApplyExtraBody(msg))
	if err != nil {
		return nil, err
	}
	return dialect.AnthropicResponseToOpenAI(reply.Body, info.Model)
}

// purposeInput is the input stage of an embeddings or rerank request: its
// input (query, documents) checked, and rewritten on a transform.
func (h *Handler) purposeInput(ctx context.Context, rec *record, req *jsonobj.Object, body []byte) ([]byte, error) {
	return h.textInput(ctx, rec, req, body, "input", "query", "documents")
}

// audioText is the input stage of the audio gateway's texts: the text a
// TTS request speaks ("input" of the upstream body) and the transcript an
// STT serve made of the caller's speech ("text" of the reply) — both the
// caller's own words.
func (h *Handler) audioText(ctx context.Context, rec *record, body []byte, key string) ([]byte, error) {
	if h.guardrails() == nil {
		return body, nil
	}
	obj, err := jsonobj.Parse(body)
	if err != nil {
		return body, nil
	}
	return h.textInput(ctx, rec, obj, body, key)
}

// textInput runs the input stage on the strings under tops of req.
func (h *Handler) textInput(ctx context.Context, rec *record, req *jsonobj.Object, body []byte, tops ...string) ([]byte, error) {
	e := h.guardrails()
	if e == nil {
		return body, nil
	}
	extra := guardExtra(rec)
	if !e.Active(guard.Input, extra) {
		return body, nil
	}
	jt, err := extractTexts(req, tops)
	if err != nil {
		return body, nil
	}
	res, err := e.Check(ctx, guard.Input, &guard.Content{Stage: guard.Input, Texts: jt.texts}, extra)
	if err != nil {
		return nil, err
	}
	rec.guardNote().add(guard.Input, res)
	if res.Blocked() {
		return nil, guardBlocked(ctx, rec, guard.Input, res)
	}
	if !res.Rewritten() {
		return body, nil
	}
	out, err := jt.rewrite(req, res.Texts)
	if err != nil {
		return nil, errInternal.withDetail("guardrails: could not rewrite the request")
	}
	return out, nil
}

// guardrailsView is GET /admin/guardrails: the effective configuration
// (secret-looking option values masked: only environment variable names
// are shown) and the verdict counters of the running engine.
type guardrailsView struct {
	Enabled      bool                `json:"enabled"`
	Mode         string              `json:"mode"`
	OutputCheck  string              `json:"output_check"`
	OutputWindow int                 `json:"output_window"`
	MaxHold      int                 `json:"max_hold"`
	Providers    []guardProviderView `json:"providers"`
	Counts       []guard.Count       `json:"counts"`
}

type guardProviderView struct {
	Name               string             `json:"name"`
	Type               string             `json:"type"`
	Enabled            bool               `json:"enabled"`
	Stages             []string           `json:"stages"`
	OnError            string             `json:"on_error"`
	Apply              string             `json:"apply"`
	Timeout            string             `json:"timeout,omitempty"`
	Options            any                `json:"options,omitempty"`
	CategoryThresholds map[string]float64 `json:"category_thresholds,omitempty"`
}

func (h *Handler) serveGuardrails(w *recorder, r *http.Request, rec *record) error {
	v := guardrailsView{Providers: []guardProviderView{}, Counts: []guard.Count{}}
	if e := h.guard.Load(); e != nil {
		cfg := e.Config()
		v.Enabled, v.Mode, v.OutputCheck, v.OutputWindow, v.MaxHold = cfg.Enabled, cfg.Mode, cfg.OutputCheck, cfg.OutputWindow, cfg.MaxHold
		for _, p := range cfg.Providers {
			pv := guardProviderView{Name: p.Name, Type: p.Type, Enabled: p.Enabled, OnError: p.OnError, Apply: p.Apply,
				Options: maskOptions("", p.Options), CategoryThresholds: p.CategoryThresholds, Stages: []string{}}
			if p.Input {
				pv.Stages = append(pv.Stages, "input")
			}
			if p.Output {
				pv.Stages = append(pv.Stages, "output")
			}
			if p.Timeout > 0 {
				pv.Timeout = p.Timeout.String()
			}
			v.Providers = append(v.Providers, pv)
		}
		if c := e.Counts(); c != nil {
			v.Counts = c
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return errInternal
	}
	writeJSON(w, http.StatusOK, append(b, '\n'))
	return nil
}

// maskOptions copies a provider's options with every value under a
// secret-looking key (secret, token, password, api_key, authorization,
// headers) replaced; keys ending in _env name a variable and are shown.
// A URL's query is masked too (a hook may take a token there; userinfo
// is refused when the config loads).
func maskOptions(key string, v any) any {
	lk := strings.ToLower(key)
	secret := !strings.HasSuffix(lk, "_env") && (strings.Contains(lk, "secret") || strings.Contains(lk, "token") ||
		strings.Contains(lk, "password") || strings.Contains(lk, "api_key") || strings.Contains(lk, "authorization") || lk == "headers" || lk == "key")
	switch x := v.(type) {
	case map[string]any:
		if x == nil {
			return nil
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = maskOptions(k, e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = maskOptions(key, e)
		}
		return out
	case string:
		if secret {
			return "(masked)"
		}
		if i := strings.IndexByte(x, '?'); i >= 0 && (strings.HasPrefix(x, "http://") || strings.HasPrefix(x, "https://")) {
			return x[:i+1] + "(masked)"
		}
		return v
	default:
		if secret {
			return "(masked)"
		}
		return v
	}
}
