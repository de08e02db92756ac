package tsrouter

import (
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// The inference pipeline. Chat Completions, Messages, Responses and text
// Completions callers take the same steps, in this order:
//
//	read → parse (caller dialect → OpenAI Chat) → authorize the model →
//	[input stage] → admit to the tier → open the upstream (serve dialect) →
//	relay or translate back → [output stage] → record
//
// The caller's dialect is a callerAPI (callers.go) and the serve's a
// serveSide (below); each is chosen once per request. Between them the
// request travels as OpenAI Chat, except on a passthrough — a caller whose
// dialect is the tier's own — where the caller's body is edited in place
// and the serve's bytes are relayed as they are.
//
// Later stages plug in at two named places: the input stage (in infer,
// after the model is authorized and before the tier is admitted: the
// parsed request and the caller are known, nothing has been sent) and the
// output stage (between the serve's events or reply and the caller: the
// relay's run function and callerAPI.reply).

// inference is one request as the pipeline carries it.
type inference struct {
	body []byte
	// chat is the request as OpenAI Chat: what the tier gates read and
	// what a non-passthrough serve side prepares (a text completion's own
	// body, which the serve takes as it is).
	chat *jsonobj.Object
	// native is the caller's body parsed, for a passthrough.
	native *jsonobj.Object
	// modelJSON is the caller's model exactly as sent (a JSON string),
	// which passthrough replies and Chat replies echo.
	modelJSON     []byte
	alias         string
	stream        bool
	toolStructure bool
	promptTokens  int
	// info describes a translated request (messages, responses).
	info dialect.RequestInfo
	// passthrough: the tier speaks the caller's dialect.
	passthrough bool
	// upInfo describes the request as translated for an Anthropic tier.
	upInfo dialect.RequestInfo
	// text marks a text completion: its context gate is promptMax, the
	// estimate of its largest prompt (a list prompt is a batch of
	// separate prompts, each of which must fit), not chat messages.
	text      bool
	promptMax int
	// responsesOpts are the operator's choices for a Responses request.
	responsesOpts dialect.ResponsesOptions
	// gate is the streamed answer's output guardrails (nil: none).
	gate *streamGuard
	// guardConv is the conversation as the input stage left it (masked
	// where it masked): the context output providers see, so a guard
	// model or webhook never gets what the input stage redacted. Nil
	// when no input stage ran.
	guardConv []guard.Text
	// usageAdded: the router asked an OpenAI serve for the stream's usage
	// chunk the caller did not ask for; the relay drops it.
	usageAdded bool
	// trackTokens: usage accounting wants the serve's token counts.
	trackTokens bool
}

// infer runs the pipeline for one caller dialect.
func (h *Handler) infer(w *recorder, r *http.Request, rec *record, a *callerAPI) error {
	h.metrics.InFlight(1)
	defer h.metrics.InFlight(-1)
	defer h.recordChat(w, rec)
	body := w.body
	q := &inference{body: body, responsesOpts: h.responsesOpts,
		trackTokens: h.usageOn() && (!h.noTokenTracking.Load() || len(rec.budgets) > 0)}
	if err := a.parse(q); err != nil {
		return err
	}
	if dropped := q.info.DroppedTools; len(dropped) > 0 {
		// Never a silent half-run: the caller and the record learn which
		// hosted tools the model was not offered.
		list := strings.Join(dropped, ",")
		w.Header().Add("X-Anvil-Warning", "hosted_tools_dropped="+list)
		rec.detail = "hosted tools dropped: " + list
	}
	tier, err := h.routeAlias(rec, q.alias)
	if err != nil {
		return err
	}
	rec.requestBytes = len(body)
	// Until the serve reports usage, the prompt is the router's estimate.
	rec.promptTokens = q.promptTokens
	rec.kind = a.kind
	q.passthrough = tier.Dialect == a.native
	if q.passthrough && a.parseNative != nil {
		if err := a.parseNative(q); err != nil {
			return err
		}
	}
	side, err := a.serveSide(rec, tier, q)
	if err != nil {
		return err
	}
	// Input stage: the request is parsed and authorized, nothing sent.
	if err := h.inputStage(r.Context(), rec, q, a); err != nil {
		return err
	}
	lease, err := h.admit(r, rec, tier, q)
	if err != nil {
		return err
	}
	// The lease is held until this handler returns — after the whole
	// stream — and released exactly once, however the request ends.
	defer lease.Release()
	// An output guard model served by this same tier runs under this
	// request's slot (guardChat): waiting for a second slot while holding
	// one could deadlock a full tier.
	r = r.WithContext(withHeldTier(r.Context(), tier))
	upBody, clamp, err := side.prepare(tier, q)
	served := noteClamp(w, clamp)
	if err != nil {
		return err
	}
	if q.stream {
		return h.stream(w, r, rec, a, side, tier, q, upBody, served)
	}
	reply, err := side.complete(r, rec, tier, q, upBody)
	if err != nil {
		return h.upstreamFailed(rec, err)
	}
	// Output stage (non-streamed): the serve's whole reply, before the
	// caller sees it.
	body, err = h.outputReply(r.Context(), rec, q, reply.Body, q.passthrough && a.native == "anthropic")
	if err != nil {
		return err
	}
	out, prompt, completion, err := a.reply(q, body)
	if err != nil {
		return h.upstreamFailed(rec, errUntranslatable)
	}
	if prompt+completion > 0 {
		rec.promptTokens, rec.compTokens = prompt, completion
		rec.usageReported = true
	}
	rec.noteUsage(backends.ReplyUsageObject(reply.Body))
	rec.decide(served, "served")
	setOverhead(w.Header(), rec)
	h.writeReply(w, out)
	return nil
}

// errUntranslatable is a serve reply the router could not turn into the
// caller's dialect: the serve's fault, a 502.
var errUntranslatable = &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply could not be translated"}

// routeAlias finds the tier of a normalized alias and checks the caller
// may use it: 404 for an unknown alias, 403 naming it when the caller's
// grant or key does not cover it.
func (h *Handler) routeAlias(rec *record, alias string) (*backends.Tier, error) {
	rec.alias = alias
	tier, ok := h.backends.Lookup(alias)
	if !ok {
		return nil, errModelUnknown
	}
	if !rec.principal.MayUseModel(alias) {
		return nil, errModelForbidden(alias).withDetail("alias not covered by the caller's grant or key")
	}
	rec.tier = tier.ID
	return tier, nil
}

// admit runs the gates every request passes once its tier is known — tool
// support, context window, admission — and returns the tier lease.
func (h *Handler) admit(r *http.Request, rec *record, tier *backends.Tier, q *inference) (*backends.Lease, error) {
	switch {
	case !tier.ToolSupport && q.toolStructure:
		rec.decide("tools_unsupported", "skipped")
		return nil, errToolsUnsupported(h.backends.ExhaustionStatus).withDetail("tools requested on a tier without tool support")
	case q.overContext(tier):
		rec.decide("over_context", "skipped")
		return nil, errOverContext.withDetail("prompt exceeds the tier's context window")
	}
	lease, err := tier.Admit(r.Context())
	if err != nil {
		return nil, h.upstreamFailed(rec, err)
	}
	return lease, nil
}

// overContext is the context-window gate: the prompt estimate against the
// tier's context_limit, refused before the serve spends a prefill on it.
func (q *inference) overContext(tier *backends.Tier) bool {
	if q.text {
		return tier.OverContextTokens(q.promptMax)
	}
	return tier.OverContext(q.chat)
}

// stream opens the serve's stream and, once its first event is in, commits
// the 200 and relays event by event. Failures before that are returned as
// usual (nothing was sent); a break after it ends with the caller
// dialect's one error event and never a clean end.
func (h *Handler) stream(w *recorder, r *http.Request, rec *record, a *callerAPI, side serveSide, tier *backends.Tier, q *inference, upBody []byte, served string) error {
	s, err := side.open(r, rec, tier, q, upBody)
	if err != nil {
		return h.upstreamFailed(rec, err)
	}
	rec.ttft = time.Since(rec.start)
	rec.streamed = true
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	setOverhead(hdr, rec)
	w.WriteHeader(http.StatusOK)
	defer h.closeStream(s, rec)
	// Output stage (streamed): the relay's run function sees every serve
	// event before the caller does; with guardrails, through q.gate.
	q.gate = h.streamGuardFor(r.Context(), rec, q)
	rl := a.relay(q)
	out := newStallWriter(w, h.writeStall)
	defer out.done()
	st, err := rl.run(out, out, s)
	rec.events = st.Events
	var blocked *guard.BlockError
	switch {
	case err == nil:
		if rl.done != nil {
			out.Write(rl.done)
			out.Flush()
		}
		rec.decide(served, "served")
	case out.stalled:
		rec.decide("client_stalled", "error")
		rec.detail = "caller stopped reading for " + h.writeStall.String() + "; upstream cancelled"
	case errors.Is(err, backends.ErrClientGone):
		rec.decide("client_disconnected", "error")
		rec.detail = "client disconnected; upstream cancelled"
	case errors.As(err, &blocked):
		// Never a clean end: the dialect's error event, the upstream
		// cancelled by closeStream.
		out.Write(guardStreamFrame(a.env, blocked))
		out.Flush()
		recordRefusal(rec, "output", " mid-stream", blocked)
		rec.detail += "; upstream cancelled"
	default:
		out.Write(rl.errorEvent())
		out.Flush()
		rec.decide("backend_error_interrupted", "error")
		rec.detail = "stream interrupted: " + err.Error()
	}
	return nil
}

// upstreamFailed records a failure of the serve (or of admission to it)
// and returns it for fail, which maps it to the caller's status.
func (h *Handler) upstreamFailed(rec *record, err error) error {
	if errors.Is(err, backends.ErrClientGone) {
		rec.decide("client_disconnected", "error")
		rec.detail = "client disconnected before the serve answered"
		return err
	}
	reason, outcome := failureReason(err), "error"
	if be, ok := err.(*backends.Error); ok && be.Reason != "" {
		reason, outcome = be.Reason, "skipped"
	}
	rec.decide(reason, outcome)
	rec.detail = "upstream: " + err.Error()
	return err
}

// closeStream releases the upstream stream and records the serve's share
// of the time and its token counts.
func (h *Handler) closeStream(s *backends.Stream, rec *record) {
	rec.upstreamAll = rec.upstream + s.Waited()
	if p, c := s.Usage(); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
		rec.cachedTokens, rec.reasoningTokens = s.UsageDetails()
		rec.usageReported = true
	}
	s.Close()
}

// serveSide is how the pipeline talks to a tier's serve.
type serveSide interface {
	// prepare builds the upstream body (model, output cap with its clamp,
	// operator overrides); it runs while the request holds its lease.
	prepare(tier *backends.Tier, q *inference) ([]byte, *backends.Clamp, error)
	// complete returns the serve's whole reply: OpenAI Chat JSON, or the
	// serve's own for a passthrough. rec.upstream gets the wait.
	complete(r *http.Request, rec *record, tier *backends.Tier, q *inference, body []byte) (*backends.Reply, error)
	// open returns the serve's stream, its first event in: OpenAI chunks,
	// or the serve's own events for a passthrough.
	open(r *http.Request, rec *record, tier *backends.Tier, q *inference, body []byte) (*backends.Stream, error)
}

// serveSideFor chooses the serve side, once.
func serveSideFor(tier *backends.Tier, q *inference) serveSide {
	switch {
	case tier.Dialect != "anthropic":
		return openAIServe{}
	case q.passthrough:
		return anthropicNative{}
	default:
		return anthropicServe{}
	}
}

// budgetRefusal answers a token budget the router cannot judge (a string,
// a fraction, a negative) with 400 naming the field; the serve is not
// called.
func budgetRefusal(body []byte, clamp *backends.Clamp, err error) ([]byte, *backends.Clamp, error) {
	var be *backends.BudgetError
	if errors.As(err, &be) {
		return nil, nil, errBadRequest(be.Error()).withDetail("refused before the serve: " + be.Error())
	}
	return body, clamp, err
}

// nativeExchange sends a body already in the serve's dialect and returns
// the serve's reply and events as they are.
type nativeExchange struct{}

func (nativeExchange) complete(r *http.Request, rec *record, tier *backends.Tier, _ *inference, body []byte) (*backends.Reply, error) {
	return completeJSON(r, rec, tier.Complete, body)
}

func (nativeExchange) open(r *http.Request, rec *record, tier *backends.Tier, _ *inference, body []byte) (*backends.Stream, error) {
	return openStream(r, rec, tier.OpenStream, body)
}

// openAIServe is an OpenAI-dialect tier (vLLM, SGLang): the Chat request
// with only the fields the router owns edited.
type openAIServe struct{ nativeExchange }

func (openAIServe) prepare(tier *backends.Tier, q *inference) ([]byte, *backends.Clamp, error) {
	return askUsage(q)(budgetRefusal(tier.PrepareOpenAI(q.chat)))
}

// askUsage asks an OpenAI serve for a stream's token usage
// (stream_options.include_usage) when the caller did not say, so usage
// accounting has the serve's counts rather than an estimate; the relay
// then drops the extra chunk. A caller that sent stream_options at all is
// left as it is.
func askUsage(q *inference) func([]byte, *backends.Clamp, error) ([]byte, *backends.Clamp, error) {
	return func(body []byte, clamp *backends.Clamp, err error) ([]byte, *backends.Clamp, error) {
		if err != nil || !q.stream || !q.trackTokens || q.chat.Has("stream_options") {
			return body, clamp, err
		}
		obj, perr := jsonobj.Parse(body)
		if perr != nil {
			return body, clamp, nil
		}
		var e jsonobj.Edit
		e.Set("stream_options", []byte(`{"include_usage":true}`))
		q.usageAdded = true
		return obj.Apply(&e), clamp, nil
	}
}

// anthropicNative is an Anthropic tier for a Messages caller: the caller's
// body edited in place (model, max_tokens cap, operator overrides).
type anthropicNative struct{ nativeExchange }

func (anthropicNative) prepare(tier *backends.Tier, q *inference) ([]byte, *backends.Clamp, error) {
	return budgetRefusal(tier.PrepareAnthropic(q.native))
}

// anthropicServe is an Anthropic tier for Chat and Responses callers: the
// Chat request translated to Messages (then the operator's extra_body in
// the serve's terms), and the serve's reply and events translated back to
// OpenAI Chat.
type anthropicServe struct{}

func (anthropicServe) prepare(tier *backends.Tier, q *inference) ([]byte, *backends.Clamp, error) {
	body, clamp, err := budgetRefusal(tier.PrepareForTranslation(q.chat))
	if err != nil {
		return nil, nil, err
	}
	out, info, err := dialect.OpenAIToAnthropic(body, dialect.ToAnthropicOptions{})
	if err != nil {
		msg := "bad request body"
		var re *dialect.RequestError
		if errors.As(err, &re) {
			msg = re.Message
		}
		return nil, clamp, errBadRequest(msg).withDetail("request could not be translated for the serve's dialect")
	}
	q.upInfo = info
	return tier.ApplyExtraBody(out), clamp, nil
}

func (anthropicServe) complete(r *http.Request, rec *record, tier *backends.Tier, q *inference, body []byte) (*backends.Reply, error) {
	reply, err := completeJSON(r, rec, tier.Complete, body)
	if err != nil {
		return nil, err
	}
	out, err := dialect.AnthropicResponseToOpenAI(reply.Body, q.upInfo.Model)
	if err != nil {
		return nil, errUntranslatable
	}
	return &backends.Reply{Body: out, ContentType: "application/json"}, nil
}

func (anthropicServe) open(r *http.Request, rec *record, tier *backends.Tier, q *inference, body []byte) (*backends.Stream, error) {
	s, err := openStream(r, rec, tier.OpenStream, body)
	if err != nil {
		return nil, err
	}
	s.TranslateToOpenAI(dialect.NewOpenAIStream(q.upInfo.Model, q.upInfo))
	return s, nil
}

// completionsServe is an OpenAI-dialect tier's text completions endpoint:
// the caller's body with only the fields the router owns edited, the reply
// and stream as the serve sent them.
type completionsServe struct{}

func (completionsServe) prepare(tier *backends.Tier, q *inference) ([]byte, *backends.Clamp, error) {
	return askUsage(q)(budgetRefusal(tier.PrepareOpenAI(q.chat)))
}

func (completionsServe) complete(r *http.Request, rec *record, tier *backends.Tier, _ *inference, body []byte) (*backends.Reply, error) {
	return completeJSON(r, rec, tier.CompleteText, body)
}

func (completionsServe) open(r *http.Request, rec *record, tier *backends.Tier, _ *inference, body []byte) (*backends.Stream, error) {
	return openStream(r, rec, tier.OpenTextStream, body)
}

// sendFunc sends a request body to one endpoint of a tier.
type sendFunc[T any] func(ctx context.Context, body []byte) (T, error)

// completeJSON sends a non-streaming request and checks the reply is JSON.
func completeJSON(r *http.Request, rec *record, send sendFunc[*backends.Reply], body []byte) (*backends.Reply, error) {
	up := time.Now()
	reply, err := send(r.Context(), body)
	rec.upstream = time.Since(up)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(reply.ContentType); mt != "application/json" || !jsonobj.Valid(reply.Body) {
		return nil, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply is not JSON"}
	}
	return reply, nil
}

// openStream opens the serve's stream; it returns once the first event
// is in (or the serve failed before sending one).
func openStream(r *http.Request, rec *record, open sendFunc[*backends.Stream], body []byte) (*backends.Stream, error) {
	up := time.Now()
	s, err := open(r.Context(), body)
	rec.upstream = time.Since(up)
	return s, err
}

// relay carries the serve's stream to the caller in the caller's dialect.
type relay struct {
	run func(w io.Writer, f backends.Flusher, s *backends.Stream) (backends.RelayStats, error)
	// done is written after a clean end (nil: run wrote the end).
	done []byte
	// errorEvent is the one frame after a break; called then, since a
	// translated stream's error event continues its sequence.
	errorEvent func() []byte
}

// eventTranslator turns the serve's OpenAI chunks into another caller
// dialect's events (dialect.NewAnthropicStream, dialect.NewResponsesStream).
type eventTranslator interface {
	Start() []byte
	Chunk(data []byte) ([]byte, error)
	Finish() []byte
	ErrorEvent() []byte
}

// translatedRelay relays the serve's OpenAI chunks through tr, one
// caller event (or several) per serve event.
func translatedRelay(tr eventTranslator, q *inference) relay {
	run := func(w io.Writer, f backends.Flusher, s *backends.Stream) (st backends.RelayStats, _ error) {
		if _, err := w.Write(tr.Start()); err != nil {
			return st, backends.ErrClientGone
		}
		for {
			_, data, err := s.Next()
			if err == io.EOF && q.gate != nil {
				tail, gerr := q.gate.openAITail()
				if gerr != nil {
					return st, gerr
				}
				if tail != nil {
					out, _ := tr.Chunk(tail)
					w.Write(out)
				}
			}
			if err == io.EOF {
				w.Write(tr.Finish())
				f.Flush()
				return st, nil
			}
			if err != nil {
				return st, err
			}
			if q.gate != nil {
				if data, err = q.gate.openAIChunk(data); err != nil {
					return st, err
				}
				if data == nil {
					continue
				}
			}
			out, err := tr.Chunk(data)
			st.Events++
			if err != nil {
				// Events produced before the error go out first.
				w.Write(out)
				return st, err
			}
			if _, err := w.Write(out); err != nil {
				return st, backends.ErrClientGone
			}
			if !s.Buffered() {
				f.Flush()
			}
		}
	}
	return relay{run: run, errorEvent: tr.ErrorEvent}
}

// setOverhead reports the router's own time on this request so far —
// everything before the response starts, minus the time spent waiting for
// the serve — so users can check the router's cost in production.
func setOverhead(h http.Header, rec *record) {
	us := (time.Since(rec.start) - rec.upstream).Microseconds()
	h["X-Anvil-Overhead-Us"] = []string{strconv.FormatInt(max(us, 0), 10)}
}

// noteClamp reports a lowered output cap in the response headers and
// returns the decision reason for a served request.
func noteClamp(w http.ResponseWriter, clamp *backends.Clamp) (served string) {
	if clamp == nil {
		return "served"
	}
	h := w.Header()
	req, app := strconv.FormatInt(clamp.Requested, 10), strconv.FormatInt(clamp.Applied, 10)
	h.Set("Warning", `299 anvil-serving "max_tokens clamped from `+req+` to `+app+`"`)
	h.Add("X-Anvil-Warning", "max_tokens_clamped")
	h.Set("X-Anvil-Max-Tokens-Requested", req)
	h.Set("X-Anvil-Max-Tokens-Applied", app)
	return "served_output_clamped"
}

func itoa(n int) string { return strconv.Itoa(n) }
