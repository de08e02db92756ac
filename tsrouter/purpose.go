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

// purposePaths maps the purpose endpoints to their model kind.
var purposePaths = map[string]string{"/v1/embeddings": "embedding", "/v1/rerank": "rerank"}

// purpose serves POST /v1/embeddings and /v1/rerank: validated, then relayed
// verbatim to the configured purpose model (never to a chat tier).
func (h *Handler) purpose(w *recorder, r *http.Request, rec *record, kind string) {
	models := h.backends.PurposeModels(kind)
	if len(models) == 0 {
		writeError(w, envGeneric, errNoRoute(r.URL.Path))
		return
	}
	body, aerr := h.readBody(r)
	if aerr != nil {
		writeError(w, envGeneric, aerr)
		return
	}
	req, aerr := parseObject(body)
	if aerr != nil {
		writeError(w, envGeneric, aerr)
		return
	}
	var model string
	if json.Unmarshal(req.Get("model"), &model) != nil || strings.TrimSpace(model) == "" {
		writeError(w, envGeneric, errBadRequest("model must be a non-empty string"))
		return
	}
	if msg := purposeInputProblem(kind, req); msg != "" {
		writeError(w, envGeneric, errBadRequest(msg))
		return
	}
	p, ok := h.backends.Purpose(kind, model)
	if !ok {
		writeError(w, envGeneric, &apiError{Status: http.StatusNotFound, Type: "model_not_found",
			Message: "unknown " + kind + " model; configured: " + strings.Join(models, ", ")})
		return
	}
	// Grants name the model; a restricted key lists the entry's id.
	if !rec.principal.MayUseBackend(backends.NormalizeAlias(model), p.ID) {
		writeError(w, envGeneric, errModelForbidden(model))
		return
	}
	rec.alias, rec.tier = kind, p.ID
	reply, err := p.Relay(r.Context(), body)
	outcome, reason := "served", "served"
	defer func() {
		h.decisions.Record(telemetry.Decision{
			Kind: kind, Route: kind, RequestedTier: p.ID, ServedTier: map[bool]string{true: p.ID}[outcome == "served"],
			Attempts:     []telemetry.Attempt{{TierID: p.ID, Succeeded: outcome == "served", Reason: reason, Outcome: outcome}},
			RequestBytes: int64(len(body)), ResponseBytes: w.bytes, LatencyMS: float64(time.Since(rec.start).Microseconds()) / 1000,
			RequestID: rec.requestID, WorkbenchRunID: rec.workbenchRunID, TaskID: rec.taskID, UnixTS: float64(rec.start.UnixMicro()) / 1e6,
		})
	}()
	var be *backends.Error
	switch {
	case errors.Is(err, backends.ErrClientGone):
		outcome, reason = "error", "client_disconnected"
		return
	case errors.As(err, &be) && be.Kind == backends.Rejected:
		// The serve refused the input itself: the caller must know, as a 4xx.
		outcome, reason = "error", "backend_error_rejected"
		rec.detail = "upstream: " + err.Error()
		writeError(w, envGeneric, fromUpstream(err, h.backends.ExhaustionStatus))
		return
	case err != nil:
		outcome, reason = "error", "backend_error_failed"
		rec.detail = "upstream: " + err.Error()
		writeError(w, envGeneric, &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "model upstream failed"})
		return
	}
	if b := bytes.TrimSpace(reply.Body); len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		outcome, reason = "error", "backend_error_malformed"
		writeError(w, envGeneric, &apiError{Status: http.StatusBadGateway, Type: "upstream_error", Message: "model upstream failed"})
		return
	}
	writeJSON(w, http.StatusOK, reply.Body)
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
