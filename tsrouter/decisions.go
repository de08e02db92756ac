package tsrouter

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// recordChat writes the decision for a chat request that named a
// configured alias, and feeds the request metrics. Called once, when the
// handler is done.
func (h *Handler) recordChat(w *recorder, rec *record) {
	total := time.Since(rec.start)
	upstream := rec.upstreamAll
	if upstream == 0 {
		upstream = rec.upstream
	}
	h.metrics.ObserveRequest(rec.alias, rec.tier, w.status, total, upstream, rec.ttft)
	if rec.reason == "" {
		return
	}
	served := ""
	if rec.outcome == "served" {
		served = rec.tier
	}
	kind := rec.kind
	if kind == "" {
		kind = "chat"
	}
	h.decisions.Record(telemetry.Decision{
		Guardrails:        rec.guard.verdictList(),
		GuardrailEntities: rec.guard.entityCounts(),
		Kind:              kind,
		Route:             rec.alias,
		RequestedTier:     rec.tier,
		ServedTier:        served,
		Attempts: []telemetry.Attempt{{
			TierID: rec.tier, Succeeded: rec.outcome == "served", Reason: rec.reason,
			PromptTokens: rec.promptTokens, CompletionTokens: rec.compTokens, Outcome: rec.outcome,
		}},
		TotalPromptTokens:     rec.promptTokens,
		TotalCompletionTokens: rec.compTokens,
		RequestBytes:          int64(rec.requestBytes),
		ResponseBytes:         w.bytes,
		LatencyMS:             float64(total.Microseconds()) / 1000,
		TTFTMS:                float64(rec.ttft.Microseconds()) / 1000,
		RequestID:             rec.requestID,
		WorkbenchRunID:        rec.workbenchRunID,
		TaskID:                rec.taskID,
		UnixTS:                float64(rec.start.UnixMicro()) / 1e6,
	})
}

// decide sets the decision reason and outcome of rec.
func (rec *record) decide(reason, outcome string) {
	rec.reason, rec.outcome = reason, outcome
}

// failureReason names an upstream or admission failure for the decision
// log (fixed tokens, as the Python router's reasons).
func failureReason(err error) string {
	be, ok := err.(*backends.Error)
	switch {
	case err == backends.ErrClientGone:
		return "client_disconnected"
	case !ok:
		return "backend_error_internal"
	case be.Kind == backends.Unavailable:
		return "unavailable"
	case be.Kind == backends.Rejected:
		return "backend_error_rejected"
	case be.Kind == backends.Interrupted:
		return "backend_error_interrupted"
	}
	return "backend_error_failed"
}

// tierGauges are the per-alias gauges of /metrics: readiness and
// configured capacity, and live load scraped from each serve.
func (h *Handler) tierGauges() []telemetry.TierGauge {
	tiers := h.backends.Tiers()
	lives := make([]backends.Live, len(tiers))
	var wg sync.WaitGroup
	for i, t := range tiers {
		wg.Go(func() { lives[i] = t.LiveCapacity(context.Background()) })
	}
	wg.Wait()
	var out []telemetry.TierGauge
	for i, t := range tiers {
		c := t.Capacity()
		ctxLimit := float64(t.ContextLimit)
		g := telemetry.TierGauge{Tier: t.ID, Loaded: t.Readiness().Available, ContextLimit: &ctxLimit,
			RequestsRunning: lives[i].RequestsRunning, RequestsWaiting: lives[i].RequestsWaiting, KVCacheUsage: lives[i].KVCacheUsage}
		if kv, ok := c.KVCacheCapacityTokens.(int64); ok {
			f := float64(kv)
			g.KVCacheCapacity = &f
		}
		if il, ok := c.ImageLimit.(int64); ok {
			f := float64(il)
			g.ImageLimit = &f
		}
		for _, alias := range t.Aliases {
			g.Alias = alias
			out = append(out, g)
		}
	}
	return out
}

// serveMetrics refreshes the queue and readiness gauges, then serves the
// exposition.
func (h *Handler) serveMetrics(w *recorder, r *http.Request, rec *record) error {
	for _, t := range h.backends.Tiers() {
		h.metrics.SetQueueDepth(t.ID, t.QueueDepth())
		h.metrics.SetTierReady(t.ID, t.Readiness().Available)
	}
	body, contentType, err := h.metrics.Exposition(r.URL.RawQuery)
	if err != nil {
		return err
	}
	writeBody(w, http.StatusOK, contentType, body)
	return nil
}

// serveDecisions serves GET /v1/decisions (admin).
func (h *Handler) serveDecisions(w *recorder, r *http.Request, rec *record) error {
	return writeView(w)(h.decisions.Decisions(r.URL.RawQuery))
}

// serveStats serves GET /v1/stats (admin).
func (h *Handler) serveStats(w *recorder, r *http.Request, rec *record) error {
	return writeView(w)(h.decisions.Stats(r.URL.RawQuery))
}

// serveRequest serves GET /v1/requests/{request_id} (admin). The id is
// decoded once more, as the Python router did; an id with a slash is no
// request id.
func (h *Handler) serveRequest(w *recorder, r *http.Request, rec *record) error {
	id, err := url.PathUnescape(r.PathValue("request_id"))
	if err != nil || strings.Contains(id, "/") {
		id = ""
	}
	return writeView(w)(h.decisions.Request(id))
}

// writeView answers a decision-log view: its body, or its error.
func writeView(w http.ResponseWriter) func([]byte, error) error {
	return func(body []byte, err error) error {
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, body)
		return nil
	}
}
