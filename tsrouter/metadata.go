package tsrouter

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
)

// The metadata endpoints clients reconcile their limits from (harness
// sync) and operators watch, in the Python router's shapes.

// visibleTiers is the chat tiers the caller may reach through at least
// one of their aliases: the metadata views show nothing else, like
// /v1/models.
func visibleTiers(set *backends.Set, rec *record) []*backends.Tier {
	if rec.principal.AllModels {
		return set.Tiers()
	}
	var out []*backends.Tier
	for _, t := range set.Tiers() {
		if slices.ContainsFunc(t.Aliases, rec.principal.MayUseModel) {
			out = append(out, t)
		}
	}
	return out
}

// modelFilter reads the only query parameter the model views accept,
// ?model=alias, and returns the tiers to show: those the caller may reach
// (an alias it may not use is unknown to it).
func (h *Handler) modelFilter(rec *record, q url.Values, extra ...string) ([]*backends.Tier, error) {
	for k := range q {
		if k != "model" && !slices.Contains(extra, k) {
			return nil, errBadQuery("unsupported query parameter " + strconv.Quote(k))
		}
	}
	if vs, ok := q["model"]; ok {
		if len(vs) != 1 {
			return nil, errBadQuery("model may be given once")
		}
		alias := backends.NormalizeAlias(vs[0])
		t, ok := h.backends.Lookup(alias)
		if !ok || !rec.principal.MayUseModel(alias) {
			return nil, errModelUnknown
		}
		return []*backends.Tier{t}, nil
	}
	return visibleTiers(h.backends, rec), nil
}

func readinessView(r backends.Readiness) map[string]any {
	return map[string]any{"loaded": r.Available, "state": r.State, "reason": safeReason(r.Reason)}
}

// safeReason passes only fixed-token reasons to callers.
func safeReason(s string) string {
	if s == "" || len(s) > 64 || strings.IndexFunc(s, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) >= 0 {
		return "unavailable"
	}
	return s
}

func sortedAliases(t *backends.Tier) []string { return slices.Sorted(slices.Values(t.Aliases)) }

func intOrNil(n int) any {
	if n > 0 {
		return n
	}
	return nil
}

// capabilities serves GET /v1/models/capabilities[?model=].
func (h *Handler) capabilities(w *recorder, r *http.Request, rec *record) error {
	tiers, aerr := h.modelFilter(rec, r.URL.Query())
	if aerr != nil {
		return aerr
	}
	rows := []map[string]any{}
	for _, t := range tiers {
		mod, thinking, compat, img, vid := t.Capabilities()
		row := map[string]any{
			"object": "model_capabilities", "id": t.ID, "aliases": sortedAliases(t), "model": t.Model,
			"context_limit_tokens": t.ContextLimit,
			"tools":                map[string]any{"supported": t.ToolSupport},
			"modalities":           mod,
			"thinking":             nilIfEmpty(thinking),
			"compat":               nilIfEmpty(compat),
			"limits":               map[string]any{"max_output_tokens": intOrNil(t.MaxOutputTokens), "images_per_request": img, "video_per_request": vid},
			"readiness":            readinessView(t.Readiness()),
		}
		rows = append(rows, row)
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": rows})
	return nil
}

func nilIfEmpty(m map[string]any) any {
	if m == nil {
		return nil
	}
	return m
}

// fingerprints serves GET /v1/models/fingerprints[?model=].
func (h *Handler) fingerprints(w *recorder, r *http.Request, rec *record) error {
	tiers, aerr := h.modelFilter(rec, r.URL.Query())
	if aerr != nil {
		return aerr
	}
	rows := []map[string]any{}
	for _, t := range tiers {
		rd := t.Readiness()
		rows = append(rows, map[string]any{
			"object": "model_fingerprint", "id": t.ID, "aliases": sortedAliases(t), "model": t.Model,
			"fingerprint":     t.Fingerprint(),
			"served_identity": map[string]any{"expected": nilIfBlank(rd.ExpectedModel), "observed": nilIfBlank(rd.ObservedModel)},
			"readiness":       readinessView(rd),
		})
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": rows})
	return nil
}

func nilIfBlank(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// healthTiers serves GET /v1/health/tiers: one row per serve — chat tiers
// (role llm), then purpose models (embeddings, rerank), then the audio
// routes the gateway serves (stt, tts), each in config order. Purpose and
// audio rows come from an unauthenticated GET of the serve's /v1/models,
// cached like tier probes; those probes run in parallel so one hung serve
// costs one probe timeout, not one per row.
func (h *Handler) healthTiers(w *recorder, r *http.Request, rec *record) error {
	type entry struct {
		id, role string
		check    func() backends.Readiness
	}
	var entries []entry
	for _, t := range visibleTiers(h.backends, rec) {
		entries = append(entries, entry{t.ID, "llm", t.Readiness})
	}
	for _, p := range h.backends.Purposes() {
		if !rec.principal.MayUseBackend(backends.NormalizeAlias(p.Model), p.ID) {
			continue
		}
		role := map[string]string{"embedding": "embeddings", "rerank": "rerank"}[p.Kind]
		entries = append(entries, entry{p.ID, role, p.Readiness})
	}
	for _, a := range h.audioGW.routes {
		if !rec.principal.MayUseBackend(a.ID, a.ID) {
			continue
		}
		entries = append(entries, entry{a.ID, a.Purpose, a.Readiness})
	}
	results := make([]backends.Readiness, len(entries))
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Go(func() { results[i] = e.check() })
	}
	wg.Wait()
	rows := make([]map[string]any, 0, len(entries))
	for i, e := range entries {
		rows = append(rows, healthRow(e.id, e.role, results[i]))
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"tiers": rows})
	return nil
}

// healthRow is one row of /v1/health/tiers: fixed tokens, no URLs.
func healthRow(id, role string, rd backends.Readiness) map[string]any {
	status := "down"
	switch {
	case rd.Available:
		status = "up"
	case strings.HasPrefix(rd.Reason, backends.ReasonIdentityMismatch):
		status = "degraded"
	}
	var last any
	if !rd.CheckedAt.IsZero() {
		last = rd.CheckedAt.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	var latency any
	if rd.Latency > 0 {
		latency = math.Round(float64(rd.Latency.Microseconds())/10) / 100
	}
	return map[string]any{"id": id, "role": role, "status": status, "last_check": last, "latency_ms": latency, "reason": safeReason(rd.Reason)}
}

// routerStatus serves GET /v1/router/status.
func (h *Handler) routerStatus(w *recorder, r *http.Request, rec *record) error {
	if r.URL.RawQuery != "" {
		return errBadQuery("/v1/router/status takes no query parameters")
	}
	tiers := visibleTiers(h.backends, rec)
	enabled := 0
	for _, t := range tiers {
		if t.Snapshot().State == backends.StateAdmitting {
			enabled++
		}
	}
	aliases := []string{}
	for _, m := range modelsFor(h.backends, mayList(rec)) {
		aliases = append(aliases, m.alias)
	}
	slices.Sort(aliases)
	writeJSONValue(w, http.StatusOK, map[string]any{
		"object": "router_status", "package_version": h.version,
		"started_at":     h.started.UTC().Format("2006-01-02T15:04:05.000Z"),
		"uptime_seconds": math.Round(time.Since(h.started).Seconds()*1000) / 1000,
		"model_aliases":  aliases,
		"tier_counts":    map[string]int{"configured": len(tiers), "enabled": enabled},
		"config_sha256":  h.configHash,
	})
	return nil
}

// capacityParams are the scenario inputs of /v1/models/capacity.
var capacityParams = []string{"gpu_role", "images", "videos", "input_tokens", "image_tokens", "video_tokens", "output_tokens"}

// capacity serves GET /v1/models/capacity: configured capacity joined with
// live load scraped from each serve's /metrics, and an optional scenario.
func (h *Handler) capacity(w *recorder, r *http.Request, rec *record) error {
	q := r.URL.Query()
	tiers, aerr := h.modelFilter(rec, q, capacityParams...)
	if aerr != nil {
		return aerr
	}
	scenario := map[string]int64{}
	for _, k := range capacityParams[1:] {
		if vs, ok := q[k]; ok {
			n, err := strconv.ParseInt(vs[0], 10, 64)
			if len(vs) != 1 || err != nil || n < 0 || n > 10_000_000 || strings.TrimLeft(vs[0], "0123456789") != "" {
				return errBadQuery(k + " must be a whole number from 0 to 10000000")
			}
			scenario[k] = n
		}
	}
	role := q.Get("gpu_role")
	rows := make([]map[string]any, len(tiers))
	var wg sync.WaitGroup
	for i, t := range tiers {
		wg.Go(func() { rows[i] = capacityRow(r.Context(), t, scenario) })
	}
	wg.Wait()
	out := []map[string]any{}
	for i, t := range tiers {
		if role != "" && t.Capacity().GPURole != role {
			continue
		}
		out = append(out, rows[i])
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": out})
	return nil
}

func capacityRow(ctx context.Context, t *backends.Tier, scenario map[string]int64) map[string]any {
	c := t.Capacity()
	rd := t.Readiness()
	live := t.LiveCapacity(ctx)
	var fullCtx any
	if kv, ok := c.KVCacheCapacityTokens.(int64); ok && t.ContextLimit > 0 {
		fullCtx = math.Round(float64(kv)/float64(t.ContextLimit)*1000) / 1000
	}
	liveView := map[string]any{
		"status": live.Status, "reason": nilIfBlank(live.Reason),
		"requests_running": live.RequestsRunning, "requests_waiting": live.RequestsWaiting,
		"kv_cache_usage_fraction": live.KVCacheUsage, "preemptions_total": live.PreemptionsTotal,
		"multimodal_cache_queries_total": live.MMCacheQueries, "multimodal_cache_hits_total": live.MMCacheHits,
		"kv_cache_used_tokens_estimate": nil, "kv_cache_remaining_tokens_estimate": nil,
	}
	if kv, ok := c.KVCacheCapacityTokens.(int64); ok && live.KVCacheUsage != nil {
		used := math.Round(float64(kv) * *live.KVCacheUsage)
		liveView["kv_cache_used_tokens_estimate"] = int64(used)
		liveView["kv_cache_remaining_tokens_estimate"] = max(kv-int64(used), 0)
	}
	row := map[string]any{
		"object": "model_capacity", "id": t.ID, "aliases": sortedAliases(t), "model": t.Model,
		"loaded":    rd.Available,
		"readiness": map[string]any{"state": rd.State, "reason": safeReason(rd.Reason)},
		"engine":    map[string]any{"name": nilIfBlank(t.Engine), "quantization": nilIfBlank(t.Quantization)},
		"gpu":       map[string]any{"role": c.GPURole, "name": c.GPUName, "memory_total_mib": c.GPUMemoryTotalMiB},
		"capacity": map[string]any{
			"context_limit_tokens": t.ContextLimit, "kv_cache_capacity_tokens": c.KVCacheCapacityTokens,
			"full_context_concurrency": fullCtx, "configured_max_concurrency": intOrNil(t.MaxConcurrency),
			"scheduler_max_num_seqs": c.SchedulerMaxNumSeqs, "model_memory_gib": c.ModelMemoryGiB,
		},
		"multimodal": map[string]any{
			"admission_enabled": c.MediaAdmission, "image_limit": c.ImageLimit, "video_limit": c.VideoLimit,
			"image_tokens_estimate": c.ImageTokensEstimate, "video_tokens_estimate": c.VideoTokensEstimate,
		},
		"live":     liveView,
		"scenario": nil,
	}
	if len(scenario) > 0 {
		row["scenario"] = scenarioView(t, c, scenario)
	}
	return row
}

// scenarioView answers "would this request fit?" from configured limits.
func scenarioView(t *backends.Tier, c backends.CapacityParams, s map[string]int64) map[string]any {
	images, videos := s["images"], s["videos"]
	source := "request"
	imageTokens, hasImg := s["image_tokens"]
	videoTokens, hasVid := s["video_tokens"]
	if !hasImg {
		if est, ok := c.ImageTokensEstimate.(int64); ok {
			imageTokens, source = images*est, "configured_estimate"
		}
	}
	if !hasVid {
		if est, ok := c.VideoTokensEstimate.(int64); ok {
			videoTokens, source = videos*est, "configured_estimate"
		}
	}
	total := s["input_tokens"] + imageTokens + videoTokens + s["output_tokens"]
	within := total <= int64(t.ContextLimit)
	var imgOK, vidOK any
	if lim, ok := c.ImageLimit.(int64); ok {
		imgOK = images <= lim
	}
	if lim, ok := c.VideoLimit.(int64); ok {
		vidOK = videos <= lim
	}
	var allowed any = within
	note := "estimate from configured limits; the serve decides"
	switch {
	case !within || imgOK == false || vidOK == false:
		allowed = false
	case (images > 0 && imgOK == nil) || (videos > 0 && vidOK == nil):
		allowed, note = nil, "media limits are not configured for this tier"
	}
	return map[string]any{
		"images": images, "videos": videos, "input_tokens": s["input_tokens"], "image_tokens": imageTokens,
		"video_tokens": videoTokens, "output_tokens": s["output_tokens"], "total_tokens": total,
		"visual_token_source": source, "within_context": within, "within_image_limit": imgOK,
		"within_video_limit": vidOK, "allowed": allowed, "note": note,
	}
}
