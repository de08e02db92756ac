package tsrouter

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// purpose serves POST /v1/embeddings and /v1/rerank: validated, then relayed
// verbatim to the configured purpose model of kind (never to a chat tier).
// The route exists only when such models are configured.
func (h *Handler) purpose(w *recorder, r *http.Request, rec *record, kind string) error {
	models := h.backends.PurposeModels(kind)
	body := w.body
	req, err := parseObject(body)
	if err != nil {
		return err
	}
	var model string
	if json.Unmarshal(req.Get("model"), &model) != nil || strings.TrimSpace(model) == "" {
		return errBadRequest("model must be a non-empty string")
	}
	if msg := purposeInputProblem(kind, req); msg != "" {
		return errBadRequest(msg)
	}
	p, ok := h.backends.Purpose(kind, model)
	if !ok {
		// Name only the models this caller may use.
		var mine []string
		for _, m := range models {
			if q, ok := h.backends.Purpose(kind, m); ok && rec.principal.MayUseBackend(backends.NormalizeAlias(m), q.ID) {
				mine = append(mine, m)
			}
		}
		return errUnknownPurposeModel("unknown " + kind + " model; configured: " + strings.Join(mine, ", "))
	}
	// Grants name the model; a restricted key lists the entry's id.
	if !rec.principal.MayUseBackend(backends.NormalizeAlias(model), p.ID) {
		return errModelForbidden(model)
	}
	rec.alias, rec.tier = kind, p.ID
	// Input stage: the texts to embed or rank, before the serve.
	if body, err = h.purposeInput(r.Context(), rec, req, body); err != nil {
		return err
	}
	reply, err := p.Relay(r.Context(), body)
	outcome, reason := "served", "served"
	defer func() {
		h.decisions.Record(telemetry.Decision{
			Kind: kind, Route: kind, RequestedTier: p.ID, ServedTier: map[bool]string{true: p.ID}[outcome == "served"],
			Attempts:     []telemetry.Attempt{{TierID: p.ID, Succeeded: outcome == "served", Reason: reason, Outcome: outcome}},
			RequestBytes: int64(len(body)), ResponseBytes: w.bytes, LatencyMS: float64(time.Since(rec.start).Microseconds()) / 1000,
			RequestID: rec.requestID, WorkbenchRunID: rec.workbenchRunID, TaskID: rec.taskID, UnixTS: float64(rec.start.UnixMicro()) / 1e6,
			Guardrails: rec.guard.verdictList(), GuardrailEntities: rec.guard.entityCounts(),
		})
	}()
	var be *backends.Error
	switch {
	case errors.Is(err, backends.ErrClientGone):
		outcome, reason = "error", "client_disconnected"
		return err
	case errors.As(err, &be) && be.Kind == backends.Rejected:
		// The serve refused the input itself: the caller must know, as a 4xx.
		outcome, reason = "error", "backend_error_rejected"
		return fromUpstream(err, h.backends.ExhaustionStatus).withDetail("upstream: " + err.Error())
	case err != nil:
		// Anything else is the serve's failure: 502, never the exhaustion
		// status (there is no other purpose model to fail over to).
		outcome, reason = "error", "backend_error_failed"
		return errUpstreamFailed.withDetail("upstream: " + err.Error())
	}
	if b := bytes.TrimSpace(reply.Body); len(b) == 0 || b[0] != '{' || !jsonobj.Valid(b) {
		outcome, reason = "error", "backend_error_malformed"
		return errUpstreamFailed
	}
	// Embeddings and rerank report prompt tokens only; without them the
	// input is the router's estimate (about four bytes a token).
	rec.noteUsage(backends.ReplyUsageObject(reply.Body))
	if !rec.usageReported {
		rec.promptTokens = len(body) / 4
	}
	h.writeReply(w, reply.Body)
	return nil
}

// purposeInputProblem checks the kind-specific required fields.
func purposeInputProblem(kind string, req *jsonobj.Object) string {
	if kind == "embedding" {
		in := req.Get("input")
		var s string
		var list []json.RawMessage
		switch {
		case json.Unmarshal(in, &s) == nil && s != "":
		case json.Unmarshal(in, &list) == nil && len(list) > 0:
		default:
			return "input must be a non-empty string or a non-empty list"
		}
		return ""
	}
	var q string
	if json.Unmarshal(req.Get("query"), &q) != nil || q == "" {
		return "query must be a non-empty string"
	}
	var docs []json.RawMessage
	if json.Unmarshal(req.Get("documents"), &docs) != nil || len(docs) == 0 {
		return "documents must be a non-empty list"
	}
	return ""
}
