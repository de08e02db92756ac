package telemetry

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Query limits of the read endpoints, as the Python router had them.
const (
	defaultDecisionsLimit = 20
	maxDecisionsLimit     = 500
	defaultStatsLimit     = 100
	maxStatsLimit         = 10000
)

// scope says what the views summarize: the retained ring, not a time window
// and not the process lifetime (eviction and restarts shrink it).
const scope = "current_decision_log_buffer"

// omittedFields tells readers which content the records deliberately never
// hold, so nobody goes looking for prompts in the decision log.
var omittedFields = []string{
	"prompt", "messages", "content", "response", "api_key",
	"authorization", "token", "audio", "audio_b64", "input", "text",
}

// secretRE finds secret-shaped substrings: bearer tokens, OpenAI-style
// sk-… keys and NAME_KEY=value / NAME_TOKEN: value assignments. Decision
// fields are router-made labels, but a backend error label could still
// echo a header or an environment line; this is the last line of defence
// before the views.
var secretRE = regexp.MustCompile(`(?i)bearer(?:_|\s+)[a-z0-9._~+/-]{6,}` +
	`|sk-(?:proj-)?[a-z0-9_-]{6,}` +
	`|[a-z0-9_-]*(?:token|secret|api_key|api-key|key)[a-z0-9_-]*\s*[:=]\s*\S+`)

// mayHoldSecret is a cheap pre-check for secretRE: every match contains
// "bearer", "sk-", ':' or '='. Tier ids and reason labels contain none of
// them, so views over a full ring skip the regexp almost always.
func mayHoldSecret(s string) bool {
	if strings.ContainsAny(s, ":=") {
		return true
	}
	l := strings.ToLower(s)
	return strings.Contains(l, "bearer") || strings.Contains(l, "sk-")
}

const redacted = "<redacted>"

// safeText renders a record string for the views: "-" when empty,
// secret-shaped substrings replaced by <redacted>, and runs of whitespace
// and '>' collapsed to '_' so a value can never break a line or fake a
// field in line-oriented exports of the JSON.
func safeText(s string) string {
	if s == "" {
		return "-"
	}
	secret := mayHoldSecret(s)
	if !secret && !needsCollapse(s) {
		return s
	}
	var b strings.Builder
	last := 0
	if secret {
		for _, m := range secretRE.FindAllStringIndex(s, -1) {
			collapse(&b, s[last:m[0]])
			b.WriteString(redacted)
			last = m[1]
		}
	}
	collapse(&b, s[last:])
	return b.String()
}

func needsCollapse(s string) bool {
	for _, r := range s {
		// RuneError: invalid UTF-8 is rewritten (as U+FFFD) too.
		if r == '>' || unicode.IsSpace(r) || r == utf8.RuneError {
			return true
		}
	}
	return false
}

func collapse(b *strings.Builder, s string) {
	run := false
	for _, r := range s {
		if r == '>' || unicode.IsSpace(r) {
			if !run {
				b.WriteByte('_')
			}
			run = true
			continue
		}
		run = false
		b.WriteRune(r) // invalid UTF-8 becomes U+FFFD
	}
}

// safeID renders a correlation id: "-" unless it passes ValidID.
func safeID(s string) string {
	if !ValidID(s) {
		return "-"
	}
	return s
}

// attemptView and recordView are the public projection of a Decision
// (the Python router's view shape): no unix_ts, every string made safe.
type attemptView struct {
	TierID           string `json:"tier_id"`
	Succeeded        bool   `json:"succeeded"`
	Reason           string `json:"reason"`
	PromptTokens     int    `json:"prompt_tokens"`
	CompletionTokens int    `json:"completion_tokens"`
	Outcome          string `json:"outcome"`
}

type recordView struct {
	Route                 string        `json:"route"`
	Kind                  string        `json:"kind"`
	RequestedTier         string        `json:"requested_tier"`
	ServedTier            string        `json:"served_tier"`
	Attempts              []attemptView `json:"attempts"`
	TotalPromptTokens     int           `json:"total_prompt_tokens"`
	TotalCompletionTokens int           `json:"total_completion_tokens"`
	RequestBytes          int64         `json:"request_bytes"`
	ResponseBytes         int64         `json:"response_bytes"`
	LatencyMS             float64       `json:"latency_ms"`
	TTFTMS                float64       `json:"ttft_ms,omitempty"`
	RequestID             string        `json:"request_id"`
	WorkbenchRunID        string        `json:"workbench_run_id"`
	TaskID                string        `json:"task_id"`
	// Guardrail verdicts and entity counts (omitted when none ran).
	Guardrails        []string       `json:"guardrails,omitempty"`
	GuardrailEntities map[string]int `json:"guardrail_entities,omitempty"`
}

func project(d *Decision) recordView {
	v := recordView{
		Route:                 safeText(d.Route),
		Kind:                  safeText(d.Kind),
		RequestedTier:         safeText(d.RequestedTier),
		ServedTier:            safeText(d.ServedTier),
		Attempts:              make([]attemptView, len(d.Attempts)),
		TotalPromptTokens:     max(d.TotalPromptTokens, 0),
		TotalCompletionTokens: max(d.TotalCompletionTokens, 0),
		RequestBytes:          max(d.RequestBytes, 0),
		ResponseBytes:         max(d.ResponseBytes, 0),
		LatencyMS:             d.LatencyMS, // made finite and ≥ 0 by Record
		TTFTMS:                d.TTFTMS,
		RequestID:             safeID(d.RequestID),
		WorkbenchRunID:        safeID(d.WorkbenchRunID),
		TaskID:                safeID(d.TaskID),
		GuardrailEntities:     d.GuardrailEntities,
	}
	for _, g := range d.Guardrails {
		v.Guardrails = append(v.Guardrails, safeText(g))
	}
	for i, a := range d.Attempts {
		v.Attempts[i] = attemptView{
			TierID:           safeText(a.TierID),
			Succeeded:        a.Succeeded,
			Reason:           safeText(a.Reason),
			PromptTokens:     max(a.PromptTokens, 0),
			CompletionTokens: max(a.CompletionTokens, 0),
			Outcome:          safeText(a.Outcome),
		}
	}
	return v
}

// queryValues parses the raw query like Python's parse_qs did: blank
// values are dropped, so ?model=&limit= means "no filter, default limit".
// A malformed query (bad escape) is an error rather than silently ignored.
func queryValues(rawQuery string) (url.Values, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	for k, vs := range q {
		kept := vs[:0]
		for _, v := range vs {
			if v != "" {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(q, k)
		} else {
			q[k] = kept
		}
	}
	return q, nil
}

// parseLimit reads ?limit=, which must appear at most once and be an
// integer in 1..max.
func parseLimit(q url.Values, def, maxLimit int) (int, string) {
	vs, ok := q["limit"]
	if !ok {
		return def, ""
	}
	if len(vs) != 1 {
		return 0, "limit must be specified once"
	}
	n, err := strconv.Atoi(vs[0])
	if err != nil {
		return 0, "limit must be an integer"
	}
	if n < 1 || n > maxLimit {
		return 0, "limit must be between 1 and " + strconv.Itoa(maxLimit)
	}
	return n, ""
}

// statsQuery is a validated ?model=&limit= of /v1/stats and /metrics.
type statsQuery struct {
	model string // normalized alias; "" = all routes
	limit int
}

// QueryError is a view's refusal of its query or id. The router's error
// writer turns it into a response; the messages never echo the caller's
// values.
type QueryError struct {
	Status  int
	Type    string
	Message string
}

func (e *QueryError) Error() string { return e.Message }

func badQuery(msg string) *QueryError {
	return &QueryError{Status: http.StatusBadRequest, Type: "invalid_request", Message: msg}
}

var errRecordNotFound = &QueryError{Status: http.StatusNotFound, Type: "not_found", Message: "request record not found"}

// parseStatsQuery validates /v1/stats and /metrics parameters.
func (r *Recorder) parseStatsQuery(rawQuery string) (statsQuery, error) {
	q, err := queryValues(rawQuery)
	if err != nil {
		return statsQuery{}, badQuery("malformed query string")
	}
	for k := range q {
		if k != "model" && k != "limit" {
			return statsQuery{}, badQuery("unsupported query parameter")
		}
	}
	var sq statsQuery
	if vs, ok := q["model"]; ok {
		if len(vs) != 1 {
			return statsQuery{}, badQuery("model must be specified once")
		}
		sq.model = normalizeAlias(vs[0])
		if !ValidID(sq.model) {
			return statsQuery{}, badQuery("invalid model")
		}
	}
	limit, msg := parseLimit(q, defaultStatsLimit, maxStatsLimit)
	if msg != "" {
		return statsQuery{}, badQuery(msg)
	}
	sq.limit = limit
	// Checked after the syntax so a malformed query is a 400 whatever
	// the model; never echo the caller's string back.
	if sq.model != "" && !r.knownAlias(sq.model) {
		return statsQuery{}, &QueryError{Status: http.StatusNotFound, Type: "model_not_found", Message: "unknown configured model"}
	}
	return sq, nil
}

// Decisions answers GET /v1/decisions?limit=N: the newest N records
// (default 20, at most 500), oldest first, with totals. Only limit is
// defined here, so other parameters are ignored (unlike /v1/stats, whose
// extra parameters are errors), as in the Python router.
func (r *Recorder) Decisions(rawQuery string) ([]byte, error) {
	q, err := queryValues(rawQuery)
	if err != nil {
		return nil, badQuery("malformed query string")
	}
	limit, msg := parseLimit(q, defaultDecisionsLimit, maxDecisionsLimit)
	if msg != "" {
		return nil, badQuery(msg)
	}
	available := r.Len()
	recs := r.last(limit)

	type totals struct {
		PromptTokens     int            `json:"prompt_tokens"`
		CompletionTokens int            `json:"completion_tokens"`
		RequestBytes     int64          `json:"request_bytes"`
		ResponseBytes    int64          `json:"response_bytes"`
		LatencyMS        float64        `json:"latency_ms"`
		ServedTiers      map[string]int `json:"served_tiers"`
		AttemptOutcomes  map[string]int `json:"attempt_outcomes"`
	}
	body := struct {
		Count         int          `json:"count"`
		Available     int          `json:"available"`
		Limit         int          `json:"limit"`
		Records       []recordView `json:"records"`
		Totals        totals       `json:"totals"`
		OmittedFields []string     `json:"omitted_fields"`
	}{
		Count:         len(recs),
		Available:     available,
		Limit:         limit,
		Records:       make([]recordView, len(recs)),
		Totals:        totals{ServedTiers: map[string]int{}, AttemptOutcomes: map[string]int{}},
		OmittedFields: omittedFields,
	}
	for i := range recs {
		v := project(&recs[i])
		body.Records[i] = v
		t := &body.Totals
		t.PromptTokens += v.TotalPromptTokens
		t.CompletionTokens += v.TotalCompletionTokens
		t.RequestBytes += v.RequestBytes
		t.ResponseBytes += v.ResponseBytes
		t.LatencyMS += v.LatencyMS
		if v.ServedTier != "-" {
			t.ServedTiers[v.ServedTier]++
		}
		for _, a := range v.Attempts {
			t.AttemptOutcomes[a.Outcome]++
		}
	}
	return encodeView(body)
}

// aggregate is one block of /v1/stats: the totals, or one route.
type aggregate struct {
	Requests struct {
		Total     int `json:"total"`
		Succeeded int `json:"succeeded"`
		Failed    int `json:"failed"`
	} `json:"requests"`
	Tokens struct {
		Prompt     int `json:"prompt"`
		Completion int `json:"completion"`
		Total      int `json:"total"`
	} `json:"tokens"`
	Bytes struct {
		Request  int64 `json:"request"`
		Response int64 `json:"response"`
		Total    int64 `json:"total"`
	} `json:"bytes"`
	LatencyMS latencySummary `json:"latency_ms"`
	// TTFTMS summarizes the streamed answers' time to first event.
	TTFTMS latencySummary `json:"ttft_ms"`

	latencies, ttfts []float64
}

// latencySummary: null average and percentiles when there are no samples.
type latencySummary struct {
	Samples int      `json:"samples"`
	Average *float64 `json:"average"`
	P50     *float64 `json:"p50"`
	P95     *float64 `json:"p95"`
}

func (a *aggregate) add(v *recordView) {
	a.Requests.Total++
	if v.ServedTier != "-" {
		a.Requests.Succeeded++
	} else {
		a.Requests.Failed++
	}
	a.Tokens.Prompt += v.TotalPromptTokens
	a.Tokens.Completion += v.TotalCompletionTokens
	a.Tokens.Total += v.TotalPromptTokens + v.TotalCompletionTokens
	a.Bytes.Request += v.RequestBytes
	a.Bytes.Response += v.ResponseBytes
	a.Bytes.Total += v.RequestBytes + v.ResponseBytes
	// Zero latency means "not measured" (a request refused before any
	// timing), so it must not drag the percentiles down.
	if v.LatencyMS > 0 {
		a.latencies = append(a.latencies, v.LatencyMS)
	}
	if v.TTFTMS > 0 {
		a.ttfts = append(a.ttfts, v.TTFTMS)
	}
}

func (a *aggregate) finish() {
	a.LatencyMS, a.TTFTMS = summarize(a.latencies), summarize(a.ttfts)
	a.latencies, a.ttfts = nil, nil
}

// summarize is the average and nearest-rank p50 and p95 of l (sorted in
// place).
func summarize(l []float64) latencySummary {
	s := latencySummary{Samples: len(l)}
	if len(l) == 0 {
		return s
	}
	sort.Float64s(l)
	var sum float64
	for _, x := range l {
		sum += x
	}
	avg := sum / float64(len(l))
	s.Average = &avg
	s.P50 = &l[nearestRank(len(l), 50)]
	s.P95 = &l[nearestRank(len(l), 95)]
	return s
}

// nearestRank is the index of the p-th percentile of n sorted samples by
// the nearest-rank method: the ceil(p/100·n)-th smallest, an observed
// value. Integer arithmetic so 95% of 20 is exactly rank 19.
func nearestRank(n, p int) int {
	return max((p*n+99)/100-1, 0)
}

// stats aggregates the newest q.limit records matching q.model.
type stats struct {
	available, matching, count int
	total                      aggregate
	routes                     map[string]*aggregate
}

func (r *Recorder) stats(q statsQuery) stats {
	recs := r.Snapshot()
	s := stats{available: len(recs), routes: map[string]*aggregate{}}
	matching := recs[:0]
	for _, d := range recs {
		if q.model == "" || normalizeAlias(d.Route) == q.model {
			matching = append(matching, d)
		}
	}
	s.matching = len(matching)
	selected := matching[max(len(matching)-q.limit, 0):]
	s.count = len(selected)
	for i := range selected {
		v := project(&selected[i])
		s.total.add(&v)
		ra := s.routes[v.Route]
		if ra == nil {
			ra = &aggregate{}
			s.routes[v.Route] = ra
		}
		ra.add(&v)
	}
	s.total.finish()
	for _, ra := range s.routes {
		ra.finish()
	}
	return s
}

// Stats answers GET /v1/stats?model=&limit=: aggregates over the newest
// limit (default 100, at most 10000) records, optionally of one configured
// alias.
func (r *Recorder) Stats(rawQuery string) ([]byte, error) {
	q, err := r.parseStatsQuery(rawQuery)
	if err != nil {
		return nil, err
	}
	s := r.stats(q)
	var model *string
	if q.model != "" {
		model = &q.model
	}
	return encodeView(struct {
		Object    string  `json:"object"`
		Scope     string  `json:"scope"`
		Available int     `json:"available"`
		Matching  int     `json:"matching"`
		Count     int     `json:"count"`
		Limit     int     `json:"limit"`
		Model     *string `json:"model"`
		aggregate
		Routes map[string]*aggregate `json:"routes"`
	}{"router_stats", scope, s.available, s.matching, s.count, q.limit, model, s.total, s.routes})
}

// Request answers GET /v1/requests/{id} with the newest record whose
// request id is id (already URL-decoded by the caller). An invalid id is
// answered like an unknown one: there is nothing to tell the caller.
func (r *Recorder) Request(id string) ([]byte, error) {
	if !ValidID(id) {
		return nil, errRecordNotFound
	}
	d, ok := r.findRequest(id)
	if !ok {
		return nil, errRecordNotFound
	}
	return encodeView(struct {
		Object string     `json:"object"`
		Scope  string     `json:"scope"`
		Record recordView `json:"record"`
	}{"router_request", scope, project(&d)})
}

// encodeView encodes a view's JSON body. HTML escaping is off so
// "<redacted>" reads as such.
func encodeView(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only unencodable floats could get here, and Record rules them
		// out; still, never send half a body.
		return nil, err
	}
	return buf.Bytes(), nil
}
