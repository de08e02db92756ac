// Package telemetry records what the router decided and served: the
// decision ring behind /v1/decisions, /v1/stats and /v1/requests/{id}, the
// JSONL decision sink, and the Prometheus metrics.
package telemetry

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/state"
)

// DefaultCapacity is how many decisions the ring keeps, as in the Python router.
const DefaultCapacity = 10000

// Attempt is one tier attempt within a decision.
type Attempt struct {
	TierID    string `json:"tier_id"`
	Succeeded bool   `json:"succeeded"`
	// Reason is a content-free label: served, served_output_clamped,
	// over_context, unavailable, quiesced, backend_error_<kind>, ...
	Reason           string `json:"reason"`
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"`
	// Outcome is served, skipped or error.
	Outcome string `json:"outcome"`
}

// Decision is the record of one dispatched request, in the Python router's record shape. It
// holds metadata only: never prompt or response text, never credentials.
type Decision struct {
	// Kind is chat (chat, messages, responses), completion (text
	// completions), embedding, rerank, audio-stt or audio-tts.
	Kind string `json:"kind"`
	// Route is the normalized alias, or embedding/rerank/stt/tts.
	Route         string    `json:"route"`
	RequestedTier string    `json:"requested_tier"`
	ServedTier    string    `json:"served_tier"` // "" when nothing served
	Attempts      []Attempt `json:"attempts"`

	TotalPromptTokens     int     `json:"total_prompt_tokens"`
	TotalCompletionTokens int     `json:"total_completion_tokens"`
	RequestBytes          int64   `json:"request_bytes"`
	ResponseBytes         int64   `json:"response_bytes"`
	LatencyMS             float64 `json:"latency_ms"`
	// TTFTMS is a streamed answer's time to its first event (0: not
	// streamed, or nothing came). Not in the JSONL sink, whose shape is
	// the Python router's.
	TTFTMS float64 `json:"ttft_ms,omitempty"`

	// Correlation ids, as returned by Correlation.
	RequestID      string `json:"request_id"`
	WorkbenchRunID string `json:"workbench_run_id"`
	TaskID         string `json:"task_id"`

	// UnixTS is when the request finished; Record fills it in when zero.
	UnixTS float64 `json:"unix_ts"`

	// Guardrails are the guardrail verdicts ("provider:stage:verdict[:category]")
	// and GuardrailEntities the entity counts found; never matched text.
	Guardrails        []string       `json:"guardrails,omitempty"`
	GuardrailEntities map[string]int `json:"guardrail_entities,omitempty"`
}

// Options configures a Recorder.
type Options struct {
	// Capacity is the ring size; 0 means DefaultCapacity.
	Capacity int
	// LogPath is [server].decision_log_path: "" for no JSONL sink. Its
	// directory must exist.
	LogPath string
	// LogMaxBytes is the size at which the log is rotated to LogPath.1;
	// 0 means state.DefaultDecisionLogMaxBytes (64 MiB).
	LogMaxBytes int64
	// Aliases are the configured model aliases. /v1/stats and /metrics
	// accept only these as ?model=, and Record files a route outside
	// them as "unknown" so a caller's string never reaches a view or a
	// metric label. Empty: routes are kept as given (tools, tests).
	Aliases []string
	// Logger receives sink warnings; slog.Default() if nil.
	Logger *slog.Logger
	// Now is the clock for UnixTS; time.Now if nil.
	Now func() time.Time
}

// sinkQueue bounds the decisions waiting for the JSONL writer. At a few
// microseconds per line the writer keeps up with any realistic request
// rate; the queue only absorbs a disk stall, after which records are
// dropped (and counted) rather than stalling requests.
const sinkQueue = 1024

// purposeRoutes are the non-alias routes the router itself records.
var purposeRoutes = []string{"embedding", "rerank", "stt", "tts"}

// Recorder keeps the newest decisions in a fixed ring and, if configured,
// appends each to the JSONL decision log. Safe for concurrent use.
type Recorder struct {
	log     *slog.Logger
	now     func() time.Time
	aliases map[string]struct{} // normalized; nil = keep routes

	mu     sync.Mutex
	ring   []Decision
	next   int // slot the next record goes to
	n      int // records held, ≤ len(ring)
	closed bool
	sink   chan Decision // nil without a sink; closed by Close

	sinkDone chan struct{}
	sinkErr  error // from closing the file; read after sinkDone
	dropped  int   // records the full queue refused, guarded by mu
}

// New builds a Recorder. It fails if the decision log cannot be opened, so
// a mistyped decision_log_path stops the router at start instead of losing
// records silently.
func New(opts Options) (*Recorder, error) {
	if opts.Capacity < 0 || opts.LogMaxBytes < 0 {
		return nil, errors.New("telemetry: negative capacity or log size")
	}
	if opts.Capacity == 0 {
		opts.Capacity = DefaultCapacity
	}
	r := &Recorder{
		log:  opts.Logger,
		now:  opts.Now,
		ring: make([]Decision, opts.Capacity),
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.now == nil {
		r.now = time.Now
	}
	if len(opts.Aliases) > 0 {
		r.aliases = make(map[string]struct{}, len(opts.Aliases))
		for _, a := range opts.Aliases {
			r.aliases[normalizeAlias(a)] = struct{}{}
		}
	}
	if opts.LogPath != "" {
		dl, err := state.OpenDecisionLog(opts.LogPath)
		if err != nil {
			return nil, err
		}
		if opts.LogMaxBytes > 0 {
			dl.MaxBytes = opts.LogMaxBytes
		}
		r.sink = make(chan Decision, sinkQueue)
		r.sinkDone = make(chan struct{})
		go r.writeSink(dl)
	}
	return r, nil
}

func normalizeAlias(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Capacity is the ring size.
func (r *Recorder) Capacity() int { return len(r.ring) }

// knownAlias reports whether the normalized alias is configured.
func (r *Recorder) knownAlias(a string) bool {
	_, ok := r.aliases[a]
	return ok
}

// Record stores d in the ring (evicting the oldest when full) and queues
// it for the JSONL sink. It never blocks on disk and never fails. Record
// takes ownership of d.Attempts: the caller must not change it afterwards
// (copying it here would cost an allocation on every request).
func (r *Recorder) Record(d Decision) {
	r.clean(&d)
	r.mu.Lock()
	r.ring[r.next] = d
	r.next++
	if r.next == len(r.ring) {
		r.next = 0
	}
	if r.n < len(r.ring) {
		r.n++
	}
	var warnDrop bool
	if r.sink != nil && !r.closed {
		select {
		case r.sink <- d:
		default:
			r.dropped++
			// Warn once per power of two so a long stall is visible
			// without one log line per request.
			warnDrop = r.dropped&(r.dropped-1) == 0
		}
	}
	dropped := r.dropped
	r.mu.Unlock()
	if warnDrop {
		r.log.Warn("decision log queue full; records dropped from the JSONL sink", "dropped", dropped)
	}
}

// clean makes a record safe to store: finite numbers, a timestamp,
// correlation ids that pass the header rule, and a route that is a
// configured alias (see Options.Aliases).
func (r *Recorder) clean(d *Decision) {
	if !(d.UnixTS > 0) || math.IsInf(d.UnixTS, 0) {
		d.UnixTS = float64(r.now().UnixMicro()) / 1e6
	}
	if !(d.LatencyMS > 0) || math.IsInf(d.LatencyMS, 0) {
		d.LatencyMS = 0
	}
	if !(d.TTFTMS > 0) || math.IsInf(d.TTFTMS, 0) {
		d.TTFTMS = 0
	}
	if !ValidID(d.RequestID) {
		d.RequestID = ""
	}
	if !ValidID(d.WorkbenchRunID) {
		d.WorkbenchRunID = ""
	}
	if !ValidID(d.TaskID) {
		d.TaskID = ""
	}
	if r.aliases != nil {
		d.Route = r.boundRoute(d.Route)
	}
}

func (r *Recorder) boundRoute(route string) string {
	// The common case, an already normalized alias, must not allocate.
	if route == "" || r.knownAlias(route) {
		return route
	}
	n := normalizeAlias(route)
	if r.knownAlias(n) {
		return n
	}
	for _, p := range purposeRoutes {
		if n == p {
			return p
		}
	}
	return "unknown"
}

// Snapshot returns the records in the ring, oldest first. The slice is the
// caller's; later Records do not change it.
func (r *Recorder) Snapshot() []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastLocked(r.n)
}

// last returns the newest k records (fewer if the ring holds fewer),
// oldest first.
func (r *Recorder) last(k int) []Decision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastLocked(min(k, r.n))
}

func (r *Recorder) lastLocked(k int) []Decision {
	out := make([]Decision, k)
	start := r.next - k
	if start < 0 {
		start += len(r.ring)
	}
	m := copy(out, r.ring[start:min(start+k, len(r.ring))])
	copy(out[m:], r.ring[:k-m])
	return out
}

// Len is how many records the ring holds.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// findRequest returns the newest record with request id id.
func (r *Recorder) findRequest(id string) (Decision, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.next
	for range r.n {
		i--
		if i < 0 {
			i = len(r.ring) - 1
		}
		if r.ring[i].RequestID == id {
			return r.ring[i], true
		}
	}
	return Decision{}, false
}

// Close drains the sink queue into the file and closes it. Records made
// after Close stay in the ring but no longer reach the file. Only the
// first call reports the file's close error.
func (r *Recorder) Close() error {
	r.mu.Lock()
	if r.closed || r.sink == nil {
		r.closed = true
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.sink)
	r.mu.Unlock()
	<-r.sinkDone
	return r.sinkErr
}

// writeSink is the one goroutine that writes the JSONL file, so that
// marshalling and disk latency stay off the request path.
func (r *Recorder) writeSink(dl *state.DecisionLog) {
	defer close(r.sinkDone)
	failing := 0 // consecutive failed writes
	for d := range r.sink {
		line, err := json.Marshal(sinkLine(&d))
		if err == nil {
			err = dl.Append(line)
		}
		switch {
		case err != nil:
			failing++
			// Warn on the first failure and then sparsely: a full disk
			// must not turn into one log line per request.
			if failing&(failing-1) == 0 {
				r.log.Warn("decision log write failed", "path", dl.Path(), "err", err, "failures", failing)
			}
		case failing > 0:
			r.log.Info("decision log writes recovered", "path", dl.Path(), "failed", failing)
			failing = 0
		}
	}
	r.sinkErr = dl.Close()
}

// sinkRecord is the JSONL shape: every record field, keys in sorted order
// (fields are declared alphabetically; encoding/json keeps that order), and
// null for the optional strings as the Python router wrote them.
type sinkRecord struct {
	Attempts              []sinkAttempt  `json:"attempts"`
	GuardrailEntities     map[string]int `json:"guardrail_entities,omitempty"`
	Guardrails            []string       `json:"guardrails,omitempty"`
	Kind                  string         `json:"kind"`
	LatencyMS             float64        `json:"latency_ms"`
	RequestBytes          int64          `json:"request_bytes"`
	RequestID             *string        `json:"request_id"`
	RequestedTier         string         `json:"requested_tier"`
	ResponseBytes         int64          `json:"response_bytes"`
	Route                 string         `json:"route"`
	ServedTier            *string        `json:"served_tier"`
	TaskID                *string        `json:"task_id"`
	TotalCompletionTokens int            `json:"total_completion_tokens"`
	TotalPromptTokens     int            `json:"total_prompt_tokens"`
	UnixTS                float64        `json:"unix_ts"`
	WorkbenchRunID        *string        `json:"workbench_run_id"`
}

type sinkAttempt struct {
	CompletionTokens int    `json:"completion_tokens"`
	Outcome          string `json:"outcome"`
	PromptTokens     int    `json:"prompt_tokens"`
	Reason           string `json:"reason"`
	Succeeded        bool   `json:"succeeded"`
	TierID           string `json:"tier_id"`
}

func sinkLine(d *Decision) *sinkRecord {
	s := &sinkRecord{
		Attempts:              make([]sinkAttempt, len(d.Attempts)),
		GuardrailEntities:     d.GuardrailEntities,
		Guardrails:            d.Guardrails,
		Kind:                  d.Kind,
		LatencyMS:             d.LatencyMS,
		RequestBytes:          d.RequestBytes,
		RequestID:             nullable(d.RequestID),
		RequestedTier:         d.RequestedTier,
		ResponseBytes:         d.ResponseBytes,
		Route:                 d.Route,
		ServedTier:            nullable(d.ServedTier),
		TaskID:                nullable(d.TaskID),
		TotalCompletionTokens: d.TotalCompletionTokens,
		TotalPromptTokens:     d.TotalPromptTokens,
		UnixTS:                d.UnixTS,
		WorkbenchRunID:        nullable(d.WorkbenchRunID),
	}
	for i, a := range d.Attempts {
		s.Attempts[i] = a2s(a)
	}
	return s
}

// a2s reorders an Attempt into the sorted-key field order.
func a2s(a Attempt) sinkAttempt {
	return sinkAttempt{
		CompletionTokens: a.CompletionTokens,
		Outcome:          a.Outcome,
		PromptTokens:     a.PromptTokens,
		Reason:           a.Reason,
		Succeeded:        a.Succeeded,
		TierID:           a.TierID,
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
