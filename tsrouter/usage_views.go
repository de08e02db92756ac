package tsrouter

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// The usage views: /admin/stats, /admin/stats/usage (JSON or CSV), POST
// /admin/stats/reset and the caller's own /v1/usage, in the shapes of
// contracts/usage-api.md.

// countersJSON is the contract's "Counters" object.
type countersJSON struct {
	Requests          int64   `json:"requests"`
	Errors            int64   `json:"errors"`
	InputTokens       int64   `json:"input_tokens"`
	OutputTokens      int64   `json:"output_tokens"`
	CachedTokens      int64   `json:"cached_tokens"`
	ReasoningTokens   int64   `json:"reasoning_tokens"`
	EstimatedRequests int64   `json:"estimated_requests"`
	LatencyMSSum      float64 `json:"latency_ms_sum"`
	TTFTMSSum         float64 `json:"ttft_ms_sum"`
	Streamed          int64   `json:"streamed"`
	GuardrailBlocks   int64   `json:"guardrail_blocks"`
}

func countersOf(c usage.Counters) countersJSON {
	return countersJSON{c.Requests, c.Errors, c.InputTokens, c.OutputTokens, c.CachedTokens, c.ReasoningTokens,
		c.EstimatedRequests, float64(c.LatencyUS) / 1000, float64(c.TTFTUS) / 1000, c.Streamed, c.GuardrailBlocks}
}

type budgetJSON struct {
	Name           string `json:"name"`
	Window         string `json:"window"`
	ResetsAt       string `json:"resets_at"`
	TokensPerDay   int64  `json:"tokens_per_day"`
	TokensUsed     int64  `json:"tokens_used"`
	TokensLeft     int64  `json:"tokens_left"`
	RequestsPerDay int64  `json:"requests_per_day"`
	RequestsUsed   int64  `json:"requests_used"`
	RequestsLeft   int64  `json:"requests_left"`
}

func (h *Handler) budgetView(v usage.BudgetView) budgetJSON {
	left := func(limit, used int64) int64 {
		if limit <= 0 {
			return 0
		}
		return max(limit-used, 0)
	}
	return budgetJSON{Name: v.Name, Window: "day", ResetsAt: rfc3339(usage.StartOfDay(h.usage.Now()).Add(24 * time.Hour)),
		TokensPerDay: v.TokensPerDay, TokensUsed: v.Tokens, TokensLeft: left(v.TokensPerDay, v.Tokens),
		RequestsPerDay: v.RequestsPerDay, RequestsUsed: v.Requests, RequestsLeft: left(v.RequestsPerDay, v.Requests)}
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func durationString(d time.Duration) string {
	n := func(unit time.Duration) string { return strconv.FormatInt(int64(d/unit), 10) }
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return n(24*time.Hour) + "d"
	case d%time.Hour == 0:
		return n(time.Hour) + "h"
	case d%time.Minute == 0:
		return n(time.Minute) + "m"
	}
	return n(time.Second) + "s"
}

// serveAdminStats serves GET /admin/stats.
func (h *Handler) serveAdminStats(w *recorder, r *http.Request, rec *record) error {
	st := h.usage
	now := st.Now()
	from := now.Add(-st.Retention())
	type modelJSON struct {
		Model string `json:"model"`
		Tier  string `json:"tier"`
		countersJSON
	}
	type identityJSON struct {
		Kind string `json:"kind"`
		ID   string `json:"id"`
		countersJSON
	}
	out := struct {
		Uptime     float64        `json:"uptime_seconds"`
		Since      string         `json:"since"`
		Retention  string         `json:"retention_window"`
		Totals     countersJSON   `json:"totals"`
		ByModel    []modelJSON    `json:"by_model"`
		ByIdentity []identityJSON `json:"by_identity"`
		Budgets    []budgetJSON   `json:"budgets"`
	}{Uptime: time.Since(h.started).Seconds(), Retention: durationString(st.Retention()),
		Totals: countersOf(st.Total(from)), ByModel: []modelJSON{}, ByIdentity: []identityJSON{}, Budgets: []budgetJSON{}}
	since := st.Since()
	if since.IsZero() || since.Before(from) {
		since = from
	}
	out.Since = rfc3339(since)
	for _, m := range st.Groups(usage.KindModel) {
		c, _ := st.Sum(usage.KindModel, m, from)
		out.ByModel = append(out.ByModel, modelJSON{m, st.Tier(m), countersOf(c)})
	}
	for _, k := range []usage.Kind{usage.KindUser, usage.KindNode, usage.KindTag, usage.KindKey, usage.KindAnonymous} {
		for _, g := range st.Groups(k) {
			c, _ := st.Sum(k, g, from)
			out.ByIdentity = append(out.ByIdentity, identityJSON{k.String(), g, countersOf(c)})
		}
	}
	for _, b := range st.Budgets() {
		out.Budgets = append(out.Budgets, h.budgetView(b))
	}
	writeJSON(w, http.StatusOK, mustJSON(out))
	return nil
}

// parseTime reads a query time: RFC 3339 or unix seconds.
func parseTime(s string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, true
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), true
	}
	return time.Time{}, false
}

var bucketWidths = map[string]time.Duration{"1m": usage.Minute, "1h": usage.Hour, "1d": usage.Day}

func widthName(w time.Duration) string {
	for n, d := range bucketWidths {
		if d == w {
			return n
		}
	}
	return ""
}

// serveStatsUsage serves GET /admin/stats/usage: time series by group.
func (h *Handler) serveStatsUsage(w *recorder, r *http.Request, rec *record) error {
	st := h.usage
	q := r.URL.Query()
	for k := range q {
		switch k {
		case "group_by", "from", "to", "bucket", "id", "format":
		default:
			return errBadQuery("unknown query parameter " + strconv.Quote(k))
		}
	}
	groupBy := q.Get("group_by")
	if groupBy == "" {
		groupBy = "model"
	}
	kind, ok := usage.ParseKind(groupBy)
	if !ok {
		return errBadQuery("group_by must be user, node, tag, key, anonymous or model")
	}
	now := st.Now()
	to, from := now, now.Add(-st.Retention())
	if s := q.Get("to"); s != "" {
		if to, ok = parseTime(s); !ok {
			return errBadQuery("to must be RFC 3339 or unix seconds")
		}
	}
	if s := q.Get("from"); s != "" {
		if from, ok = parseTime(s); !ok {
			return errBadQuery("from must be RFC 3339 or unix seconds")
		}
	}
	if !from.Before(to) {
		return errBadQuery("from must be before to")
	}
	width := usage.DefaultWidth(to.Sub(from))
	if s := q.Get("bucket"); s != "" {
		if width, ok = bucketWidths[s]; !ok {
			return errBadQuery("bucket must be 1m, 1h or 1d")
		}
	}
	csvOut := q.Get("format") == "csv" || strings.Contains(r.Header.Get("Accept"), "text/csv")
	if f := q.Get("format"); f != "" && f != "csv" && f != "json" {
		return errBadQuery("format must be json or csv")
	}
	groups := st.Groups(kind)
	if id := q.Get("id"); id != "" {
		groups = []string{id}
	}
	type pointJSON struct {
		T string `json:"t"`
		countersJSON
	}
	type seriesJSON struct {
		Group  string      `json:"group"`
		Points []pointJSON `json:"points"`
	}
	series := []seriesJSON{}
	for _, g := range groups {
		pts, ok := st.Series(kind, g, from, to, width)
		if !ok {
			continue
		}
		s := seriesJSON{Group: g, Points: make([]pointJSON, len(pts))}
		for i, p := range pts {
			s.Points[i] = pointJSON{rfc3339(p.T), countersOf(p.Counters)}
		}
		series = append(series, s)
	}
	if csvOut {
		var buf bytes.Buffer
		cw := csv.NewWriter(&buf)
		cw.Write([]string{"group", "t", "requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
			"reasoning_tokens", "estimated_requests", "latency_ms_sum", "ttft_ms_sum", "guardrail_blocks"})
		i := func(n int64) string { return strconv.FormatInt(n, 10) }
		f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
		for _, s := range series {
			for _, p := range s.Points {
				c := p.countersJSON
				cw.Write([]string{csvCell(s.Group), p.T, i(c.Requests), i(c.Errors), i(c.InputTokens), i(c.OutputTokens),
					i(c.CachedTokens), i(c.ReasoningTokens), i(c.EstimatedRequests), f(c.LatencyMSSum), f(c.TTFTMSSum), i(c.GuardrailBlocks)})
			}
		}
		cw.Flush()
		writeBody(w, http.StatusOK, "text/csv; charset=utf-8", buf.Bytes())
		return nil
	}
	writeJSON(w, http.StatusOK, mustJSON(struct {
		GroupBy string       `json:"group_by"`
		Bucket  string       `json:"bucket"`
		From    string       `json:"from"`
		To      string       `json:"to"`
		Series  []seriesJSON `json:"series"`
	}{kind.String(), widthName(width), rfc3339(from), rfc3339(to), series}))
	return nil
}

// resetStats serves POST /admin/stats/reset; the audit line names who.
func (h *Handler) resetStats(w *recorder, r *http.Request, rec *record) error {
	h.usage.Reset()
	rec.detail = "usage statistics reset"
	writeJSON(w, http.StatusOK, mustJSON(map[string]any{"reset": true, "at": rfc3339(h.usage.Now())}))
	return nil
}

// serveMyUsage serves GET /v1/usage: the caller's own usage, never
// anyone else's (the identity comes from the request's credentials, not
// from the query).
func (h *Handler) serveMyUsage(w *recorder, r *http.Request, rec *record) error {
	st := h.usage
	now := st.Now()
	kind, id := identityOf(rec.principal)
	type identityJSON struct {
		Kind  string   `json:"kind"`
		ID    string   `json:"id"`
		User  string   `json:"user,omitempty"`
		Node  string   `json:"node,omitempty"`
		Tags  []string `json:"tags,omitempty"`
		KeyID string   `json:"key_id,omitempty"`
	}
	ij := identityJSON{Kind: kind.String(), ID: id}
	if p := rec.principal; p != nil {
		if p.Identity != nil {
			ij.Node, ij.Tags = p.Identity.Node, p.Identity.Tags
			if !p.Identity.Tagged() {
				ij.User = p.Identity.User
			}
		}
		if p.Key != nil {
			ij.KeyID = p.Key.ID
			if ij.User == "" {
				ij.User = p.Key.UserID
			}
		}
	}
	today, _ := st.Sum(kind, id, usage.StartOfDay(now))
	window, _ := st.Sum(kind, id, now.Add(-st.Retention()))
	type pointJSON struct {
		T string `json:"t"`
		countersJSON
	}
	points := []pointJSON{}
	pts, _ := st.Series(kind, id, now.Add(-st.Retention()), now, usage.Hour)
	for _, p := range pts {
		points = append(points, pointJSON{rfc3339(p.T), countersOf(p.Counters)})
	}
	// Every budget the caller draws on (its grant's or tailnet identity's,
	// its key's, a shared one): a request must fit in all of them.
	// "budget" is the first, kept for clients written before "budgets".
	budgets := []budgetJSON{}
	for _, b := range budgetsOf(rec.principal) {
		budgets = append(budgets, h.budgetView(usage.BudgetView{Name: b.name, Limits: b.Limits, BudgetUse: st.Budget(b.name)}))
	}
	var budget *budgetJSON
	if len(budgets) > 0 {
		budget = &budgets[0]
	}
	writeJSON(w, http.StatusOK, mustJSON(struct {
		Identity  identityJSON `json:"identity"`
		Today     countersJSON `json:"today"`
		Window    countersJSON `json:"window"`
		Retention string       `json:"retention_window"`
		Series    []pointJSON  `json:"series"`
		Budget    *budgetJSON  `json:"budget"`
		Budgets   []budgetJSON `json:"budgets"`
	}{ij, countersOf(today), countersOf(window), durationString(st.Retention()), points, budget, budgets}))
	return nil
}

// csvCell keeps a group name (a user login from the coordination server,
// an alias) from being read as a formula by a spreadsheet: a cell that
// starts with = + - @ or a tab or carriage return gets a leading '.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
