package tsrouter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
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

// chat serves POST /v1/chat/completions for OpenAI-dialect tiers: the body
// is relayed as sent, with only the fields the router owns edited.
func (h *Handler) chat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
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
	tier, ok := h.backends.Lookup(alias)
	if !ok {
		writeError(w, envOpenAI, errModelUnknown)
		return
	}
	log := reqLog{h.log, alias, tier.ID, stream}
	if !tier.ToolSupport && backends.HasToolStructure(req) {
		log.Info("refused: tools on a tier without tool support")
		writeError(w, envOpenAI, errExhausted(h.backends.ExhaustionStatus, ""))
		return
	}
	if tier.OverContext(req) {
		log.Info("refused: prompt exceeds the tier's context window")
		writeError(w, envOpenAI, errOverContext)
		return
	}
	if tier.Dialect != "openai" {
		log.Warn("refused: cross-dialect translation is not available in this build")
		writeError(w, envOpenAI, &apiError{Status: http.StatusNotImplemented, Type: "not_implemented", Message: "this model's serve speaks another dialect; translation is not available yet"})
		return
	}
	upBody, clamp := tier.PrepareOpenAI(req)
	if clamp != nil {
		setClampHeaders(w.Header(), clamp)
	}
	if stream {
		h.relayStream(w, r, tier, upBody, modelJSON, log, start)
		return
	}
	reply, err := tier.Complete(r.Context(), upBody)
	if err != nil {
		h.upstreamFailed(w, envOpenAI, err, log, start)
		return
	}
	if mt, _, _ := mime.ParseMediaType(reply.ContentType); mt != "application/json" || !json.Valid(reply.Body) {
		h.upstreamFailed(w, envOpenAI, &backends.Error{Kind: backends.Failed, Message: "model upstream failed", Detail: "serve reply is not JSON"}, log, start)
		return
	}
	out := backends.RewriteModel(reply.Body, modelJSON)
	writeJSON(w, http.StatusOK, out)
	log.Info("served", "status", http.StatusOK, "bytes", len(out), "ms", msSince(start))
}

// relayStream commits 200 only after the serve has produced its first event,
// then relays event by event. A break after that ends with one error frame
// and no [DONE].
func (h *Handler) relayStream(w http.ResponseWriter, r *http.Request, tier *backends.Tier, body, modelJSON []byte, log reqLog, start time.Time) {
	s, err := tier.OpenStream(r.Context(), body)
	if err != nil {
		h.upstreamFailed(w, envOpenAI, err, log, start)
		return
	}
	defer s.Close()
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f := flusher{w}
	st, err := backends.RelayOpenAI(w, f, s, modelJSON)
	switch {
	case err == nil:
		w.Write(sseDone)
		f.Flush()
		log.Info("served", "status", http.StatusOK, "events", st.Events, "bytes", st.Bytes, "ms", msSince(start))
	case errors.Is(err, backends.ErrClientGone):
		log.Info("client disconnected; upstream cancelled", "events", st.Events, "ms", msSince(start))
	default:
		w.Write(streamErrorFrame(envOpenAI))
		f.Flush()
		log.Warn("stream interrupted", "err", err.Error(), "events", st.Events, "ms", msSince(start))
	}
}

// upstreamFailed answers a failure that happened before anything was sent.
func (h *Handler) upstreamFailed(w http.ResponseWriter, env envelope, err error, log reqLog, start time.Time) {
	if errors.Is(err, backends.ErrClientGone) {
		log.Info("client disconnected before the serve answered", "ms", msSince(start))
		return
	}
	ae := fromUpstream(err, h.backends.ExhaustionStatus)
	log.Warn("upstream failed", "status", ae.Status, "err", err.Error(), "ms", msSince(start))
	writeError(w, env, ae)
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
	size := r.ContentLength
	if size < 0 {
		size = 4096
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, h.maxBody+1))
	if n > h.maxBody {
		return nil, errTooLarge
	}
	if err != nil {
		return nil, &apiError{Status: http.StatusBadRequest, Type: "invalid_request_error", Message: "could not read request body", Close: true}
	}
	if buf.Len() == 0 {
		return []byte("{}"), nil
	}
	return buf.Bytes(), nil
}

// parseObject validates a JSON body and indexes its top-level members.
func parseObject(body []byte) (*jsonobj.Object, *apiError) {
	if !json.Valid(body) {
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

func setClampHeaders(h http.Header, c *backends.Clamp) {
	req, app := strconv.FormatInt(c.Requested, 10), strconv.FormatInt(c.Applied, 10)
	h.Set("Warning", `299 anvil-serving "max_tokens clamped from `+req+` to `+app+`"`)
	h.Set("X-Anvil-Warning", "max_tokens_clamped")
	h.Set("X-Anvil-Max-Tokens-Requested", req)
	h.Set("X-Anvil-Max-Tokens-Applied", app)
}

func itoa(n int) string { return strconv.Itoa(n) }

// reqLog writes a request's log lines with its routing attributes, without
// pre-building a logger per request (slog.With formats eagerly).
type reqLog struct {
	l      *slog.Logger
	alias  string
	tier   string
	stream bool
}

func (r reqLog) log(level slog.Level, msg string, args ...any) {
	if !r.l.Enabled(context.Background(), level) {
		return
	}
	r.l.Log(context.Background(), level, msg, append([]any{"alias", r.alias, "tier", r.tier, "stream", r.stream}, args...)...)
}

func (r reqLog) Info(msg string, args ...any) { r.log(slog.LevelInfo, msg, args...) }
func (r reqLog) Warn(msg string, args ...any) { r.log(slog.LevelWarn, msg, args...) }

// msSince is a duration in milliseconds with microsecond precision, the unit
// operators read in logs.
func msSince(t time.Time) float64 {
	return float64(time.Since(t).Microseconds()) / 1000
}
