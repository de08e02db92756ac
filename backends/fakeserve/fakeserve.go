// Package fakeserve is a vLLM-like OpenAI-compatible model serve for tests, demos and benchmarks.
//
// A [Server] answers the endpoints a router relies on (GET /health,
// GET /v1/models, POST /v1/chat/completions, GET /metrics) with bodies shaped
// like vLLM's, streams a fixed list of content deltas with a configurable
// time-to-first-token and pace, and can be switched at runtime into one of
// the failure [Mode]s a router must survive (refused connections, error
// statuses, hangs, cut streams, in-band errors, malformed chunks, a missing
// [DONE]). It also answers the OpenAI-style audio endpoints (audio.go). Two
// extra endpoints exist for manual testing: POST /fake/mode with
// {"mode":"cut"} switches the mode and GET /fake/stats returns [Stats] as JSON.
//
// Like vLLM, a chat request may omit "model"; a different model is a 404.
// Every delta counts as one completion token; prompt_tokens is approximated
// as one token per four request-body bytes. A request with "tools" is
// answered with a call of the first tool (or the one named by tool_choice;
// tool_choice "none" gets content) with the arguments {"city":"Paris"}; a
// request whose last message is a tool result is answered with text quoting
// it ([ToolResultPrefix] + the result), which ends a client's tool loop.
// A prompt can script the call instead (script.go): a line
// "fake:call NAME {args}" in the last user message calls that tool with
// those arguments, and "fake:text" gets text although tools are declared.
//
// POST /v1/messages answers Anthropic Messages requests the same way, with
// Anthropic's framing, errors and failure modes (anthropic.go), and
// POST /v1/completions text completions in vLLM's shape, fill in the
// middle (suffix) included (completions.go).
//
// The zero-delay path is built for benchmarks: everything that does not depend
// on the request is encoded once per [Options] change, and a stream with no
// TTFT and no pace is written with a single write and flush.
//
// [Start] only ever listens on a loopback address.
package fakeserve

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is a failure mode of the fake serve.
type Mode string

// The failure modes. Unless noted otherwise a mode only changes the answer to
// POST /v1/chat/completions; GET /health, /v1/models and /metrics keep
// answering normally (vLLM's health check is shallow too).
const (
	// ModeOK answers normally.
	ModeOK Mode = "ok"
	// ModeRefuse closes the connection of every request (except /fake/*)
	// without writing a response. The real "connection refused" case is
	// covered by dialling an address from [UnusedLoopbackAddr].
	ModeRefuse Mode = "refuse"
	// ModeStatus503 answers chat with a vLLM-style 503 JSON error, and
	// GET /health with 503.
	ModeStatus503 Mode = "503"
	// ModeStatus400 answers chat with vLLM's 400 context-length error (a
	// request that must not be retried).
	ModeStatus400 Mode = "400"
	// ModeStatus500 answers chat with a vLLM-style 500 JSON error.
	ModeStatus500 Mode = "500"
	// ModeHang reads the request and never answers until the request context
	// is cancelled (the client went away or the server stopped).
	ModeHang Mode = "hang"
	// ModeCut sends the role chunk and Options.CutAfter content deltas, then
	// aborts the connection with no finish chunk and no [DONE]. A
	// non-streaming request gets its headers and half of its body before the
	// abort.
	ModeCut Mode = "cut"
	// ModeInbandError answers a streaming request with HTTP 200 whose first
	// SSE event is an error with code 503, followed by [DONE] (SGLang's
	// queue-full behaviour). A non-streaming request gets a 503 with SGLang's
	// flat error body.
	ModeInbandError Mode = "inband-error"
	// ModeMidstreamError sends the role chunk and Options.CutAfter deltas,
	// then a vLLM in-band error frame, then [DONE]. A non-streaming request
	// gets a vLLM-style 500.
	ModeMidstreamError Mode = "midstream-error"
	// ModeMalformed inserts one frame whose data is not valid JSON in the
	// middle of the stream; the rest of the stream is normal. A
	// non-streaming request gets a 200 with a truncated JSON body.
	ModeMalformed Mode = "malformed"
	// ModeNoDone ends the stream cleanly after the finish (and usage) chunk
	// but without [DONE]. Non-streaming requests are answered normally.
	ModeNoDone Mode = "no-done"
)

var allModes = []Mode{
	ModeOK, ModeRefuse, ModeStatus503, ModeStatus400, ModeStatus500, ModeHang,
	ModeCut, ModeInbandError, ModeMidstreamError, ModeMalformed, ModeNoDone,
	ModeAudioWrongType, ModeAudioMalformed, ModeAudioRedirect, // audio.go
}

// Modes returns every known mode, ModeOK first.
func Modes() []Mode { return slices.Clone(allModes) }

// ParseMode returns the Mode named s ("" means ModeOK), or an error listing
// the valid names.
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return ModeOK, nil
	}
	for _, m := range allModes {
		if string(m) == s {
			return m, nil
		}
	}
	names := make([]string, len(allModes))
	for i, m := range allModes {
		names[i] = string(m)
	}
	return "", fmt.Errorf("fakeserve: unknown mode %q (want one of %s)", s, strings.Join(names, ", "))
}

// DefaultModel is the served model id when Options.Model is empty.
const DefaultModel = "fake-model"

// DefaultCutAfter is the number of deltas ModeCut and ModeMidstreamError send
// when Options.CutAfter is zero.
const DefaultCutAfter = 2

// MaxModelLen is the context length the fake reports (in /v1/models and in
// ModeStatus400's error message).
const MaxModelLen = 4096

// DefaultDeltas returns the content deltas streamed when Options.Deltas is
// empty: "Hello", " from", " the", " fake", " serve", ".".
func DefaultDeltas() []string {
	return []string{"Hello", " from", " the", " fake", " serve", "."}
}

// Options configures a Server. The zero value is usable.
type Options struct {
	// Model is the served model id (default DefaultModel).
	Model string
	// Deltas are the exact content deltas to stream, one per frame and one
	// completion token each (default DefaultDeltas).
	Deltas []string
	// Reasoning are reasoning deltas streamed before the answer under
	// vLLM's "reasoning" key (reasoning_content in a non-streaming reply);
	// each counts as a completion token (reasoning.go).
	Reasoning []string
	// ParallelTools answers a tool request with one call per declared tool
	// instead of one call of the first (reasoning.go).
	ParallelTools bool
	// TTFT is the delay before the first content delta. Like vLLM, the role
	// chunk is only sent when the first token is ready; the response headers
	// are sent at once.
	TTFT time.Duration
	// Pace is the delay between content deltas.
	Pace time.Duration
	// CutAfter is the number of deltas sent before ModeCut aborts or
	// ModeMidstreamError reports its error. Zero means DefaultCutAfter; a
	// negative value means none (the stream stops right after the role chunk).
	CutAfter int
	// Mode is the initial failure mode ("" means ModeOK).
	Mode Mode
	// ReportedMaxModelLen is the max_model_len of the /v1/models entry, as
	// vLLM reports it: 0 means MaxModelLen; a negative value leaves the
	// field out, like serves that do not report their context length.
	ReportedMaxModelLen int
	// APIKey, if set, makes every /v1/ endpoint require
	// "Authorization: Bearer <APIKey>" and answer 401 otherwise, like vLLM's
	// --api-key. /health, /metrics and /fake/* stay open.
	APIKey string
	// Logf, if set, receives one line per chat request and per mode change.
	Logf func(format string, args ...any)
}

// normalized returns a copy of o with defaults filled in and its slices
// detached from the caller's.
func (o Options) normalized() Options {
	if o.Model == "" {
		o.Model = DefaultModel
	}
	if len(o.Deltas) == 0 {
		o.Deltas = DefaultDeltas()
	} else {
		o.Deltas = slices.Clone(o.Deltas)
	}
	o.Reasoning = slices.Clone(o.Reasoning)
	if o.TTFT < 0 {
		o.TTFT = 0
	}
	if o.Pace < 0 {
		o.Pace = 0
	}
	switch {
	case o.CutAfter == 0:
		o.CutAfter = DefaultCutAfter
	case o.CutAfter < 0:
		o.CutAfter = 0
	}
	if o.Mode == "" {
		o.Mode = ModeOK
	}
	return o
}

// Stats is a snapshot of a Server's chat request counters (text
// completions and Anthropic messages count as chat requests).
type Stats struct {
	// Requests is the number of chat requests received.
	Requests int64 `json:"requests"`
	// InFlight is the number of chat requests being answered now.
	InFlight int64 `json:"in_flight"`
	// Cancelled counts requests whose context was cancelled (the client went
	// away, or a write to it failed) before the serve finished answering.
	Cancelled int64 `json:"cancelled"`
	// Completed counts requests answered in full, whatever the status
	// (error statuses and in-band errors included).
	Completed int64 `json:"completed"`
	// Aborted counts requests whose connection the serve dropped on purpose
	// (ModeRefuse, ModeCut).
	Aborted int64 `json:"aborted"`
}

// Recorded is a chat request as the serve received it.
type Recorded struct {
	Header http.Header
	Body   []byte
	Path   string
}

// Server is the fake serve. It implements http.Handler; use it with
// httptest.NewServer or [Start]. All methods are safe for concurrent use.
type Server struct {
	mu   sync.Mutex // serializes SetOptions and SetMode's option bookkeeping
	opts Options    // normalized; Mode field is stale, see mode

	plan atomic.Pointer[plan]
	mode atomic.Pointer[Mode]

	requests  atomic.Int64
	inFlight  atomic.Int64
	cancelled atomic.Int64
	completed atomic.Int64
	aborted   atomic.Int64

	promptTokens     atomic.Int64
	generationTokens atomic.Int64
	ttft             histogram

	cancelMu sync.Mutex
	cancelCh chan struct{} // closed and replaced whenever cancelled grows

	lastMu sync.Mutex
	last   Recorded // Header is the request's own map; copied by LastRequest

	audio audioState // audio.go
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	s := &Server{cancelCh: make(chan struct{})}
	s.opts = opts.normalized()
	s.plan.Store(newPlan(s.opts))
	m := s.opts.Mode
	s.mode.Store(&m)
	return s
}

// Mode returns the current failure mode.
func (s *Server) Mode() Mode { return *s.mode.Load() }

// SetMode switches the failure mode; requests already being answered keep the
// mode they started with. An unknown mode behaves like ModeOK.
func (s *Server) SetMode(m Mode) {
	if m == "" {
		m = ModeOK
	}
	s.mode.Store(&m)
	if logf := s.plan.Load().opts.Logf; logf != nil {
		logf("fakeserve: mode set to %q", m)
	}
}

// Options returns a copy of the current options (with defaults filled in and
// the current mode).
func (s *Server) Options() Options {
	s.mu.Lock()
	o := s.opts
	s.mu.Unlock()
	o.Deltas = slices.Clone(o.Deltas)
	o.Mode = s.Mode()
	return o
}

// SetOptions updates the options at runtime: fn receives a copy of the
// current options (with the current mode) and may change any field. Requests
// already being answered keep the options they started with. A change of
// Mode is applied as by SetMode.
func (s *Server) SetOptions(fn func(*Options)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.opts
	o.Deltas = slices.Clone(o.Deltas)
	cur := s.Mode()
	o.Mode = cur
	fn(&o)
	o = o.normalized()
	s.opts = o
	s.plan.Store(newPlan(o))
	if o.Mode != cur {
		s.SetMode(o.Mode)
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:  s.requests.Load(),
		InFlight:  s.inFlight.Load(),
		Cancelled: s.cancelled.Load(),
		Completed: s.completed.Load(),
		Aborted:   s.aborted.Load(),
	}
}

// LastRequest returns a copy of the most recent chat request (the zero
// Recorded if none arrived yet), including requests later refused for a bad
// API key or model. To keep the hot path allocation-free the header is copied
// here rather than on arrival, so a caller that drives ServeHTTP directly and
// then mutates its request's header will see that change.
func (s *Server) LastRequest() Recorded {
	s.lastMu.Lock()
	defer s.lastMu.Unlock()
	return Recorded{
		Header: s.last.Header.Clone(),
		Body:   slices.Clone(s.last.Body),
		Path:   s.last.Path,
	}
}

func (s *Server) record(r *http.Request, body []byte) {
	s.lastMu.Lock()
	s.last = Recorded{Header: r.Header, Body: body, Path: r.URL.Path}
	s.lastMu.Unlock()
}

// WaitCancelled blocks until Stats().Cancelled >= n or ctx is done, and
// returns ctx's error in the latter case.
func (s *Server) WaitCancelled(ctx context.Context, n int64) error {
	for {
		s.cancelMu.Lock()
		if s.cancelled.Load() >= n {
			s.cancelMu.Unlock()
			return nil
		}
		ch := s.cancelCh
		s.cancelMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) noteCancelled() {
	s.cancelMu.Lock()
	s.cancelled.Add(1)
	close(s.cancelCh)
	s.cancelCh = make(chan struct{})
	s.cancelMu.Unlock()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if s.Mode() == ModeRefuse && !strings.HasPrefix(path, "/fake/") {
		if path == chatPath || path == messagesPath || path == completionsPath {
			s.requests.Add(1)
			s.aborted.Add(1)
			if logf := s.plan.Load().opts.Logf; logf != nil {
				logf("fakeserve: chat refused (mode refuse)")
			}
		}
		refuse(w)
		return
	}
	switch path {
	case chatPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.serveChat(w, r)
	case messagesPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.serveMessages(w, r)
	case completionsPath:
		if r.Method != http.MethodPost {
			methodNotAllowed(w, http.MethodPost)
			return
		}
		s.serveCompletions(w, r)
	case "/v1/embeddings":
		s.servePurpose(w, r, "embeddings")
	case "/v1/rerank":
		s.servePurpose(w, r, "rerank")
	case transcriptionsPath:
		s.serveTranscription(w, r)
	case speechPath:
		s.serveSpeech(w, r)
	case "/health":
		if !isGet(r) {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		if s.Mode() == ModeStatus503 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	case "/v1/models":
		if !isGet(r) {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		p := s.plan.Load()
		if !p.authorizedModels(r) {
			writeJSON(w, http.StatusUnauthorized, bodyUnauthorized)
			return
		}
		writeJSON(w, http.StatusOK, p.modelsBody)
	case "/metrics":
		if !isGet(r) {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		s.serveMetrics(w)
	case "/fake/mode":
		s.serveFakeMode(w, r)
	case "/fake/stats":
		if !isGet(r) {
			methodNotAllowed(w, http.MethodGet)
			return
		}
		b, _ := json.Marshal(s.Stats())
		writeJSON(w, http.StatusOK, b)
	default:
		writeJSON(w, http.StatusNotFound, bodyNotFound)
	}
}

const chatPath = "/v1/chat/completions"

func isGet(r *http.Request) bool { return r.Method == http.MethodGet || r.Method == http.MethodHead }

func (s *Server) serveFakeMode(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost, http.MethodPut:
		var in struct {
			Mode string `json:"mode"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&in); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody("invalid JSON: "+err.Error(), "BadRequestError", "", http.StatusBadRequest))
			return
		}
		m, err := ParseMode(in.Mode)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody(err.Error(), "BadRequestError", "mode", http.StatusBadRequest))
			return
		}
		s.SetMode(m)
	default:
		methodNotAllowed(w, http.MethodGet+", "+http.MethodPost)
		return
	}
	b, _ := json.Marshal(struct {
		Mode Mode `json:"mode"`
	}{s.Mode()})
	writeJSON(w, http.StatusOK, b)
}

// authorized reports whether r carries the configured API key (always true
// when none is configured).
func (p *plan) authorized(r *http.Request) bool {
	if p.authWant == nil {
		return true
	}
	got := r.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), p.authWant) == 1
}

// refuse drops the connection without writing anything.
func refuse(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
		return
	}
	// Not hijackable (HTTP/2, recorders): abort the response instead.
	panic(http.ErrAbortHandler)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, bodyMethodNotAllowed)
}

// Shared header values; net/http only reads them.
var (
	hdrJSON        = []string{"application/json"}
	hdrEventStream = []string{"text/event-stream; charset=utf-8"}
	hdrMetrics     = []string{"text/plain; version=0.0.4; charset=utf-8"}
)

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client may be gone; nothing to do
}

// flush pushes buffered response bytes to the client.
func flush(w http.ResponseWriter) error {
	switch f := w.(type) {
	case interface{ FlushError() error }:
		return f.FlushError()
	case http.Flusher:
		f.Flush()
		return nil
	}
	return http.NewResponseController(w).Flush()
}
