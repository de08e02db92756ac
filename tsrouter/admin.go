package tsrouter

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
)

// Admin limits: a small management pool (so status reads cannot crowd
// out transitions) and one mutation at a time.
const (
	managementSlots     = 4
	defaultDrainTimeout = 30 * time.Second
	maxAdminBody        = 64 << 10
)

var (
	errAdminForbidden = &apiError{Status: http.StatusForbidden, Type: "permission_error", Message: "admin permission required"}
	errMgmtBusy       = &apiError{Status: http.StatusServiceUnavailable, Type: "server_busy", Message: "management busy; try again later"}
	errMutationBusy   = &apiError{Status: http.StatusServiceUnavailable, Type: "server_busy", Message: "transition mutation busy"}
)

func errTransition(msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: "invalid_transition", Message: msg}
}

// isAdmin: a tailnet grant with "admin": true or a key with scope admin
// (each bounded by the other, see policy.ApplyKey), or the admin token of
// [admin].auth_env in X-Admin-Token — or, where no admin token is
// configured, the router token (which every request that got this far has
// presented), as in the Python router.
func (h *Handler) isAdmin(r *http.Request, rec *record) bool {
	if rec.principal.Admin {
		return true
	}
	if h.adminToken.Enabled() {
		return h.adminToken.Allows("", r.Header.Get("X-Admin-Token"))
	}
	return h.token.Enabled()
}

// denyAdmin answers a caller without admin rights: 404 where no admin
// credential exists at all (as the Python router did with auth off), 403
// otherwise.
func (h *Handler) denyAdmin(w http.ResponseWriter, rec *record, path string) {
	if !h.token.Enabled() && !h.adminToken.Enabled() && rec.door != doorTailnet {
		writeError(w, envGeneric, errNoRoute(path))
		return
	}
	writeError(w, envGeneric, errAdminForbidden)
}

// transitionRow is one tier's lifecycle state for the admin API.
type transitionRow struct {
	backends.AdmissionSnapshot
	Ready           bool   `json:"ready"`
	ReadinessState  string `json:"readiness_state"`
	ReadinessReason string `json:"readiness_reason"`
	ExpectedModel   string `json:"expected_model"`
	ObservedModel   string `json:"observed_model"`
}

func rowOf(t *backends.Tier) transitionRow {
	r := t.Readiness()
	return transitionRow{
		AdmissionSnapshot: t.Snapshot(),
		Ready:             r.Available,
		ReadinessState:    r.State,
		ReadinessReason:   r.Reason,
		ExpectedModel:     r.ExpectedModel,
		ObservedModel:     r.ObservedModel,
	}
}

type transitionRequest struct {
	Action  string   `json:"action"`
	TierID  string   `json:"tier_id"`
	Confirm bool     `json:"confirm"`
	DryRun  *bool    `json:"dry_run"`
	Reason  *string  `json:"reason"`
	Timeout *float64 `json:"timeout"`
}

// transition serves GET/POST /v1/admin/transition: the promotion tooling's
// quiesce → drain → swap → readmit cycle.
func (h *Handler) transition(w http.ResponseWriter, r *http.Request, rec *record) {
	if !h.isAdmin(r, rec) {
		h.denyAdmin(w, rec, "/v1/admin/transition")
		return
	}
	select {
	case h.mgmt <- struct{}{}:
		defer func() { <-h.mgmt }()
	default:
		writeError(w, envGeneric, errMgmtBusy)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rows, aerr := h.statusRows(r.URL.Query().Get("tier_id"))
		if aerr != nil {
			writeError(w, envGeneric, aerr)
			return
		}
		writeJSONValue(w, http.StatusOK, map[string]any{"tiers": rows})
		return
	case http.MethodPost:
	default:
		allow(w, envGeneric, "GET, POST")
		return
	}
	var req transitionRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil || len(body) > maxAdminBody {
		writeError(w, envGeneric, errBadRequest("could not read request body"))
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, envGeneric, errBadRequest("bad JSON body: "+err.Error()))
		return
	}
	rec.tier = req.TierID
	rec.detail = "transition " + req.Action
	if req.Action == "status" {
		rows, aerr := h.statusRows(req.TierID)
		if aerr != nil {
			writeError(w, envGeneric, aerr)
			return
		}
		writeJSONValue(w, http.StatusOK, map[string]any{"tiers": rows})
		return
	}
	if req.Action != "quiesce" && req.Action != "drain" && req.Action != "readmit" {
		writeError(w, envGeneric, errTransition("unsupported action; use status, quiesce, drain or readmit"))
		return
	}
	if req.TierID == "" {
		writeError(w, envGeneric, errTransition("tier_id is required"))
		return
	}
	tier, ok := h.backends.Tier(req.TierID)
	if !ok {
		writeError(w, envGeneric, errTransition("unknown tier_id"))
		return
	}
	dryRun := req.DryRun == nil || *req.DryRun
	if req.Action != "drain" && (!req.Confirm || dryRun) {
		writeJSONValue(w, http.StatusOK, map[string]any{"applied": false, "dry_run": true, "action": req.Action, "tier_id": req.TierID})
		return
	}
	if !h.mutation.TryLock() {
		writeError(w, envGeneric, errMutationBusy)
		return
	}
	defer h.mutation.Unlock()
	var result any
	switch req.Action {
	case "quiesce":
		reason := "operator"
		if req.Reason != nil {
			reason = *req.Reason
		}
		result, err = tier.Quiesce(reason)
	case "drain":
		timeout := defaultDrainTimeout
		if req.Timeout != nil {
			if math.IsNaN(*req.Timeout) || math.IsInf(*req.Timeout, 0) || *req.Timeout <= 0 {
				writeError(w, envGeneric, errTransition(backends.ErrBadTimeout.Error()))
				return
			}
			timeout = time.Duration(*req.Timeout * float64(time.Second))
		}
		result, err = tier.Drain(r.Context(), timeout)
	case "readmit":
		result, err = tier.Readmit()
	}
	switch {
	case errors.Is(err, backends.ErrDraining), errors.Is(err, backends.ErrNotQuiesced),
		errors.Is(err, backends.ErrBadReason), errors.Is(err, backends.ErrBadTimeout):
		writeError(w, envGeneric, errTransition(err.Error()))
	case err != nil:
		writeError(w, envGeneric, &apiError{Status: http.StatusServiceUnavailable, Type: "transition_failed", Message: "transition failed"})
	default:
		rec.detail = "transition " + req.Action + " applied"
		writeJSONValue(w, http.StatusOK, map[string]any{"applied": true, "action": req.Action, "result": result})
	}
}

func (h *Handler) statusRows(tierID string) ([]transitionRow, *apiError) {
	rows := []transitionRow{}
	for _, t := range h.backends.Tiers() {
		if tierID == "" || t.ID == tierID {
			rows = append(rows, rowOf(t))
		}
	}
	if tierID != "" && len(rows) == 0 {
		return nil, errTransition("unknown tier_id")
	}
	return rows, nil
}

func writeJSONValue(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, mustJSON(v))
}
