package tsrouter

import (
	"errors"
	"math"
	"net/http"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
)

// Admin limits: a small management pool of its own (so an operator can act
// while the data plane is saturated) and one mutation at a time.
const (
	managementSlots     = 8
	adminSlots          = 4
	defaultDrainTimeout = 30 * time.Second
	maxAdminBody        = 64 << 10
)

// isAdmin: a tailnet grant with "admin": true or a key with scope admin
// (each bounded by the other, see policy.ApplyKey), or the admin
// credential of [admin.auth] (adminauth.go; [admin].auth_env is method
// bearer_token), found by admitCredentials — or, where neither is
// configured, the router token (which every request that got this far has
// presented), as in the Python router. Method none makes every caller of
// a loopback door an admin, never a tailnet caller.
func (h *Handler) isAdmin(r *http.Request, rec *record) bool {
	if rec.principal.Admin || rec.adminCred != adminNoCredential {
		return true
	}
	switch h.adminAuth.Method {
	case "":
		return h.token.Enabled()
	case AdminNone:
		return loopbackCaller(r, rec.door)
	}
	return false
}

// adminFailuresPerMinute bounds wrong admin credentials per caller (a
// tailnet node, or the loopback listener), as loginsPerMinute bounds the
// UI's login form: a weak basic password cannot be guessed at speed
// through the API either.
const adminFailuresPerMinute = 10

// admitAdmin lets an admin through, and refuses anyone else. Only failed
// attempts that presented a credential count against the caller; once
// over the limit it is refused (429) before its credential is looked at.
func (h *Handler) admitAdmin(r *http.Request, rec *record) error {
	bucket := "admin-fail\x00" + uiBinding(rec)
	now := time.Now()
	if over, wait := h.limiter.Exhausted(bucket, adminFailuresPerMinute, now); over && presentsCredentials(r) {
		return errRateLimited(policy.RetryAfterSeconds(wait)).withDetail("wrong admin credentials over " + itoa(adminFailuresPerMinute) + "/min")
	}
	if h.isAdmin(r, rec) {
		return nil
	}
	if presentsCredentials(r) {
		h.limiter.Allow(bucket, adminFailuresPerMinute, now)
	}
	return h.adminDenial(rec)
}

// adminDenial is the refusal of a caller without admin rights: 404 where
// no admin credential exists at all (as the Python router did with auth
// off), 403 otherwise.
func (h *Handler) adminDenial(rec *record) error {
	if !h.token.Enabled() && h.adminAuth.Method == "" && rec.door != doorTailnet {
		return errNoRoute
	}
	return errAdminForbidden
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

// transitionStatus serves GET /v1/admin/transition[?tier_id=]: each
// tier's lifecycle state.
func (h *Handler) transitionStatus(w *recorder, r *http.Request, rec *record) error {
	rows, err := h.statusRows(r.URL.Query().Get("tier_id"))
	if err != nil {
		return err
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"tiers": rows})
	return nil
}

// transition serves POST /v1/admin/transition: the promotion tooling's
// quiesce → drain → swap → readmit cycle (and "status").
func (h *Handler) transition(w *recorder, r *http.Request, rec *record) error {
	var req transitionRequest
	if err := decodeAdminBody(w.body, &req, false); err != nil {
		return err
	}
	rec.tier = req.TierID
	rec.detail = "transition " + req.Action
	if req.Action == "status" {
		rows, err := h.statusRows(req.TierID)
		if err != nil {
			return err
		}
		writeJSONValue(w, http.StatusOK, map[string]any{"tiers": rows})
		return nil
	}
	if req.Action != "quiesce" && req.Action != "drain" && req.Action != "readmit" {
		return errTransition("unsupported action; use status, quiesce, drain or readmit")
	}
	if req.TierID == "" {
		return errTransition("tier_id is required")
	}
	tier, ok := h.backends.Tier(req.TierID)
	if !ok {
		return errTransition("unknown tier_id")
	}
	dryRun := req.DryRun == nil || *req.DryRun
	if req.Action != "drain" && (!req.Confirm || dryRun) {
		writeJSONValue(w, http.StatusOK, map[string]any{"applied": false, "dry_run": true, "action": req.Action, "tier_id": req.TierID})
		return nil
	}
	if !h.mutation.TryLock() {
		return errMutationBusy
	}
	defer h.mutation.Unlock()
	var result any
	var err error
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
				return errTransition(backends.ErrBadTimeout.Error())
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
		return errTransition(err.Error())
	case err != nil:
		return errTransitionFail.withDetail("transition " + req.Action + " failed: " + err.Error())
	}
	rec.detail = "transition " + req.Action + " applied"
	writeJSONValue(w, http.StatusOK, map[string]any{"applied": true, "action": req.Action, "result": result})
	return nil
}

func (h *Handler) statusRows(tierID string) ([]transitionRow, error) {
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
	writeJSON(w, status, mustJSON(v))
}
