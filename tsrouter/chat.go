package tsrouter

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

var (
	defaultChatModel = []byte(`"chat"`)
	sseDone          = []byte("data: [DONE]\n\n")
)

// chat serves POST /v1/chat/completions. For an OpenAI-dialect tier the
// body is relayed as sent, with only the fields the router owns edited; an
// Anthropic tier gets it translated (complete and openStream), and its
// reply comes back as OpenAI chunks the same relay writes.
func (h *Handler) chat(w *recorder, r *http.Request, rec *record) {
	h.metrics.InFlight(1)
	defer h.metrics.InFlight(-1)
	defer h.recordChat(w, rec)
	body, aerr := h.readBody(r)
	if aerr != nil {
		writeError(w, envOpenAI, aerr)
		return
	}
	req, aerr := parseObject(body)
	if aerr != nil {
		writeError(w, envOpenAI, aerr)
		return
	}
	modelJSON, alias, aerr := requestModel(req)
	if aerr != nil {
		writeError(w, envOpenAI, aerr)
		return
	}
	stream, aerr := requestStream(req)
	if aerr != nil {
		writeError(w, envOpenAI, aerr)
		return
	}
	tier, ok := h.routeAlias(w, rec, alias, envOpenAI)
	if !ok {
		return
	}
	rec.requestBytes = len(body)
	// Until the serve reports usage, the prompt is estimated as the
	// Python router did, from the size of the messages.
	rec.promptTokens = len(req.Get("messages")) / 4
	lease, upBody, served, ok := h.admitToTier(w, r, rec, tier, req, envOpenAI, backends.HasToolStructure(req))
	if !ok {
		return
	}
	// The lease is held until this handler returns — after the whole
	// stream — and released exactly once, however the request ends.
	defer lease.Release()
	if stream {
		h.relayStream(w, r, tier, upBody, modelJSON, rec, served)
		return
	}
	reply, ok := h.complete(w, r, tier, upBody, rec, envOpenAI)
	if !ok {
		return
	}
	if p, c := backends.ReplyUsage(reply.Body); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
	}
	rec.decide(served, "served")
	out := backends.RewriteModel(reply.Body, modelJSON)
	setOverhead(w.Header(), rec)
	writeJSON(w, http.StatusOK, out)
}

// relayStream commits 200 only after the serve has produced its first event,
// then relays event by event. A break after that ends with one error frame
// and no [DONE].
func (h *Handler) relayStream(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body, modelJSON []byte, rec *record, served string) {
	s, ok := h.openStream(w, r, tier, body, rec, envOpenAI)
	if !ok {
		return
	}
	defer h.closeStream(s, rec)
	f := flusher{w}
	st, err := backends.RelayOpenAI(w, f, s, modelJSON)
	h.endRelay(w, f, st, err, rec, served, envOpenAI, sseDone)
}

// endRelay finishes a relayed stream: after a clean end it writes done (the
// dialect's terminator, if the relay did not pass the serve's on), after
// a break one error frame in env and nothing else.
func (h *Handler) endRelay(w http.ResponseWriter, f flusher, st backends.RelayStats, err error, rec *record, served string, env envelope, done []byte) {
	rec.events = st.Events
	switch {
	case err == nil:
		if done != nil {
			w.Write(done)
			f.Flush()
		}
		rec.decide(served, "served")
	case errors.Is(err, backends.ErrClientGone):
		rec.decide("client_disconnected", "error")
		rec.detail = "client disconnected; upstream cancelled"
	default:
		w.Write(streamErrorFrame(env))
		f.Flush()
		rec.decide("backend_error_interrupted", "error")
		rec.detail = "stream interrupted: " + err.Error()
	}
}

// eventTranslator turns the serve's OpenAI chunks into another caller
// dialect's events (dialect.NewAnthropicStream, dialect.NewResponsesStream).
type eventTranslator interface {
	Start() []byte
	Chunk(data []byte) ([]byte, error)
	Finish() []byte
	ErrorEvent() []byte
}

// translatedStream relays the serve's stream through tr. As for chat, 200
// is committed only after the serve's first event (errors before that are
// answered in env); a break after it ends with tr's one error event, never
// a clean end.
func (h *Handler) translatedStream(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, tr eventTranslator, env envelope, rec *record, served string) {
	s, ok := h.openStream(w, r, tier, body, rec, env)
	if !ok {
		return
	}
	defer h.closeStream(s, rec)
	f := flusher{w}
	if _, err := w.Write(tr.Start()); err != nil {
		rec.decide("client_disconnected", "error")
		return
	}
	for {
		_, data, err := s.Next()
		if err == io.EOF {
			w.Write(tr.Finish())
			f.Flush()
			rec.decide(served, "served")
			return
		}
		if err == nil {
			var out []byte
			out, err = tr.Chunk(data)
			rec.events++
			if err == nil {
				if _, werr := w.Write(out); werr != nil {
					rec.decide("client_disconnected", "error")
					return
				}
				if !s.Buffered() {
					f.Flush()
				}
				continue
			}
			// Events produced before the error go out first.
			w.Write(out)
		}
		if errors.Is(err, backends.ErrClientGone) {
			rec.decide("client_disconnected", "error")
			return
		}
		w.Write(tr.ErrorEvent())
		f.Flush()
		rec.decide("backend_error_interrupted", "error")
		rec.detail = "stream interrupted: " + err.Error()
		return
	}
}

// upstreamFailed answers a failure that happened before anything was sent.
func (h *Handler) upstreamFailed(w http.ResponseWriter, env envelope, err error, rec *record) {
	if errors.Is(err, backends.ErrClientGone) {
		rec.decide("client_disconnected", "error")
		rec.detail = "client disconnected before the serve answered"
		return
	}
	reason, outcome := failureReason(err), "error"
	if be, ok := err.(*backends.Error); ok && be.Reason != "" {
		reason, outcome = be.Reason, "skipped"
	}
	rec.decide(reason, outcome)
	rec.detail = "upstream: " + err.Error()
	writeError(w, env, fromUpstream(err, h.backends.ExhaustionStatus))
}

type flusher struct{ w http.ResponseWriter }

func (f flusher) Flush() error {
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
		return nil
	}
	return http.NewResponseController(f.w).Flush()
}

// readBody reads the request body up to the configured cap. An empty body
// is an empty object, as before.
func (h *Handler) readBody(r *http.Request) ([]byte, *apiError) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge
	}
	var body []byte
	var err error
	if r.ContentLength >= 0 {
		// One buffer of exactly the declared size; the server stops the
		// body there.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, h.maxBody+1))
		if int64(len(body)) > h.maxBody {
			return nil, errTooLarge
		}
	}
	if err != nil {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "could not read request body", Close: true}
	}
	if len(body) == 0 {
		return []byte("{}"), nil
	}
	return body, nil
}

// parseObject validates a JSON body and indexes its top-level members.
func parseObject(body []byte) (*jsonobj.Object, *apiError) {
	if !jsonobj.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		msg := "bad JSON body"
		var se *json.SyntaxError
		if errors.As(err, &se) {
			msg += ": " + se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
		}
		return nil, errBadRequest(msg)
	}
	req, err := jsonobj.Parse(body)
	switch {
	case errors.Is(err, jsonobj.ErrNotObject):
		return nil, errBadRequest("body must be a JSON object")
	case errors.Is(err, jsonobj.ErrDuplicateKey):
		return nil, errBadRequest("body has a duplicate top-level key")
	case err != nil:
		return nil, errBadRequest("bad JSON body")
	}
	return req, nil
}

// requestModel returns the caller's model exactly as sent (a JSON string,
// echoed back in replies) and its normalized alias. Absent or empty means
// "chat", as before.
func requestModel(req *jsonobj.Object) (raw []byte, alias string, _ *apiError) {
	v := req.Get("model")
	if v == nil || string(v) == "null" || string(v) == `""` {
		return defaultChatModel, "chat", nil
	}
	var s string
	if v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return nil, "", errBadRequest("model must be a string")
	}
	return v, backends.NormalizeAlias(s), nil
}

// requestStream reads "stream" strictly: only JSON true streams. The Python
// router took any truthy value, so "false" (a string) streamed.
func requestStream(req *jsonobj.Object) (bool, *apiError) {
	switch v := req.Get("stream"); string(v) {
	case "", "null", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, errBadRequest("stream must be a boolean")
	}
}

// setOverhead reports the router's own time on this request so far —
// everything before the response starts, minus the time spent waiting for
// the serve — so users can check the router's cost in production.
func setOverhead(h http.Header, rec *record) {
	us := (time.Since(rec.start) - rec.upstream).Microseconds()
	h["X-Anvil-Overhead-Us"] = []string{strconv.FormatInt(max(us, 0), 10)}
}

func setClampHeaders(h http.Header, c *backends.Clamp) {
	req, app := strconv.FormatInt(c.Requested, 10), strconv.FormatInt(c.Applied, 10)
	h.Set("Warning", `299 anvil-serving "max_tokens clamped from `+req+` to `+app+`"`)
	h.Set("X-Anvil-Warning", "max_tokens_clamped")
	h.Set("X-Anvil-Max-Tokens-Requested", req)
	h.Set("X-Anvil-Max-Tokens-Applied", app)
}

func itoa(n int) string { return strconv.Itoa(n) }

// admitToTier runs the gates every chat-shaped request passes once its
// tier is known — tool support, context window, admission — answering
// refusals in env. req is an OpenAI Chat body; upBody is it prepared for
// complete and openStream, which translate it for an Anthropic tier. On
// success the caller holds the lease until it returns.
func (h *Handler) admitToTier(w http.ResponseWriter, r *http.Request, rec *record, tier *backends.Tier, req *jsonobj.Object, env envelope, toolStructure bool) (lease *backends.Lease, upBody []byte, served string, ok bool) {
	lease, ok = h.admitGates(w, r, rec, tier, req, env, toolStructure)
	if !ok {
		return nil, nil, "", false
	}
	var clamp *backends.Clamp
	if tier.Dialect == "anthropic" {
		upBody, clamp = tier.PrepareForTranslation(req)
	} else {
		upBody, clamp = tier.PrepareOpenAI(req)
	}
	return lease, upBody, noteClamp(w, clamp), true
}

// admitGates is admitToTier without preparing a body. req is the request
// as OpenAI Chat (the gates read its messages).
func (h *Handler) admitGates(w http.ResponseWriter, r *http.Request, rec *record, tier *backends.Tier, req *jsonobj.Object, env envelope, toolStructure bool) (*backends.Lease, bool) {
	switch {
	case !tier.ToolSupport && toolStructure:
		rec.decide("tools_unsupported", "skipped")
		rec.detail = "tools requested on a tier without tool support"
		// The contract's status is the exhaustion status, which SDKs
		// retry; this tier will never take tools, so say so.
		e := errExhausted(h.backends.ExhaustionStatus, "")
		e.Permanent = true
		writeError(w, env, e)
		return nil, false
	case tier.OverContext(req):
		rec.decide("over_context", "skipped")
		rec.detail = "prompt exceeds the tier's context window"
		writeError(w, env, errOverContext)
		return nil, false
	}
	lease, err := tier.Admit(r.Context())
	if err != nil {
		h.upstreamFailed(w, env, err, rec)
		return nil, false
	}
	return lease, true
}

// noteClamp reports a lowered output cap in the response headers and
// returns the decision reason for a served request.
func noteClamp(w http.ResponseWriter, clamp *backends.Clamp) (served string) {
	if clamp == nil {
		return "served"
	}
	setClampHeaders(w.Header(), clamp)
	return "served_output_clamped"
}

// complete sends a non-streaming OpenAI Chat request and returns the
// serve's OpenAI JSON reply, answering failures in env. An Anthropic tier
// is sent the request translated and its reply comes back translated.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Reply, bool) {
	if tier.Dialect == "anthropic" {
		return h.completeTranslated(w, r, tier, body, rec, env)
	}
	return h.completeNative(w, r, tier, body, rec, env)
}

// completeNative sends body in the tier's own dialect and returns its JSON
// reply as it came.
func (h *Handler) completeNative(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Reply, bool) {
	up := time.Now()
	reply, err := tier.Complete(r.Context(), body)
	rec.upstream = time.Since(up)
	if err != nil {
		h.upstreamFailed(w, env, err, rec)
		return nil, false
	}
	if mt, _, _ := mime.ParseMediaType(reply.ContentType); mt != "application/json" || !jsonobj.Valid(reply.Body) {
		h.upstreamFailed(w, env, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply is not JSON"}, rec)
		return nil, false
	}
	return reply, true
}

// openStream opens the serve's stream for an OpenAI Chat body and, once
// its first event is in, commits the 200 and the SSE headers. Failures
// before that are answered in env. The stream yields OpenAI chunks — an
// Anthropic tier's events translated. The caller defers closeStream.
func (h *Handler) openStream(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Stream, bool) {
	if tier.Dialect == "anthropic" {
		return h.openStreamTranslated(w, r, tier, body, rec, env)
	}
	return h.openStreamNative(w, r, tier, body, rec, env)
}

// openStreamNative is openStream for a body in the tier's own dialect: the
// stream yields the serve's own events.
func (h *Handler) openStreamNative(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body []byte, rec *record, env envelope) (*backends.Stream, bool) {
	up := time.Now()
	s, err := tier.OpenStream(r.Context(), body)
	rec.upstream = time.Since(up)
	if err != nil {
		h.upstreamFailed(w, env, err, rec)
		return nil, false
	}
	rec.ttft = time.Since(rec.start)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	setOverhead(hdr, rec)
	w.WriteHeader(http.StatusOK)
	return s, true
}

// closeStream releases the upstream stream and records the serve's share
// of the time and its token counts.
func (h *Handler) closeStream(s *backends.Stream, rec *record) {
	rec.upstreamAll = rec.upstream + s.Waited()
	if p, c := s.Usage(); p+c > 0 {
		rec.promptTokens, rec.compTokens = p, c
	}
	s.Close()
}

// routeAlias finds the tier of a normalized alias and checks the caller
// may use it: 404 for an unknown alias, 403 naming it when the caller's
// grant or key does not cover it (answered in env).
func (h *Handler) routeAlias(w http.ResponseWriter, rec *record, alias string, env envelope) (*backends.Tier, bool) {
	rec.alias = alias
	tier, ok := h.backends.Lookup(alias)
	if !ok {
		writeError(w, env, errModelUnknown)
		return nil, false
	}
	if !rec.principal.MayUseModel(alias) {
		rec.detail = "alias not covered by the caller's grant or key"
		writeError(w, env, errModelForbidden(alias))
		return nil, false
	}
	rec.tier = tier.ID
	return tier, true
}
