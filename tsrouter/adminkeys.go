package tsrouter

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// keyView is how a key is shown: masked, never its digest.
type keyView struct {
	ID              string     `json:"id"`
	Key             string     `json:"key"` // masked, except once on create/rotate
	UserID          string     `json:"user_id"`
	OrganizationID  string     `json:"organization_id"`
	Name            string     `json:"name,omitempty"`
	Description     string     `json:"description,omitempty"`
	Scopes          []string   `json:"scopes"`
	RateLimit       int        `json:"rate_limit,omitempty"`
	MaxConcurrency  int        `json:"max_concurrency,omitempty"`
	TokensPerDay    int64      `json:"tokens_per_day,omitempty"`
	RequestsPerDay  int64      `json:"requests_per_day,omitempty"`
	Budget          string     `json:"budget,omitempty"`
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	AllowedBackends []string   `json:"allowed_backends"`
	Guardrails      []string   `json:"guardrails,omitempty"`
	CreatedAt       *time.Time `json:"created_at,omitempty"`
	Source          string     `json:"source"`
}

func viewOf(k policy.APIKey, secret string) keyView {
	v := keyView{ID: k.ID, Key: k.Masked(), UserID: k.UserID, OrganizationID: k.OrganizationID, Name: k.Name,
		Description: k.Description, RateLimit: k.RateLimit, MaxConcurrency: k.MaxConcurrency, Enabled: k.Enabled, AllowedBackends: k.AllowedBackends, Guardrails: k.Guardrails, Source: k.Source,
		TokensPerDay: k.TokensPerDay, RequestsPerDay: k.RequestsPerDay, Budget: k.Budget}
	if secret != "" {
		v.Key = secret
	}
	for _, s := range k.Scopes {
		v.Scopes = append(v.Scopes, string(s))
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt
		v.ExpiresAt = &t
	}
	if !k.CreatedAt.IsZero() {
		t := k.CreatedAt
		v.CreatedAt = &t
	}
	if v.AllowedBackends == nil {
		v.AllowedBackends = []string{}
	}
	return v
}

// The admin API for API keys: /admin/api-keys[/{id}[/rotate|enable|disable]].
// Every operation needs admin rights (the route table checks) and leaves
// an audit line naming who did what to which key id — never the key.

// keyRing is the ring the admin API manages; without [api_keys] the
// endpoints do not exist (404, after the admin check).
func (h *Handler) keyRing() (*KeyRing, error) {
	if h.keys == nil {
		return nil, errNoRoute
	}
	return h.keys, nil
}

func (h *Handler) listKeys(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	views := []keyView{}
	for _, k := range keys.Keys() {
		views = append(views, viewOf(k, ""))
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": views})
	return nil
}

func (h *Handler) getKey(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	k, ok := keys.Get(r.PathValue("id"))
	if !ok {
		return errKeyNotFound
	}
	writeJSONValue(w, http.StatusOK, viewOf(k, ""))
	return nil
}

func (h *Handler) updateKey(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	var upd policy.KeyUpdate
	if err := decodeAdminBody(w.body, &upd, true); err != nil {
		return err
	}
	id := r.PathValue("id")
	k, _, err := keys.Update(id, func(k *policy.APIKey) error {
		next, err := upd.Apply(*k)
		*k = next
		return err
	}, false)
	return keyResult(w, rec, "update", id, k, "", err)
}

func (h *Handler) deleteKey(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := keys.Delete(id); err != nil {
		return keyResult(w, rec, "delete", id, policy.APIKey{}, "", err)
	}
	rec.detail = "api key delete " + id
	writeJSONValue(w, http.StatusOK, map[string]any{"deleted": true, "id": id})
	return nil
}

// keyAction serves POST /admin/api-keys/{id}/rotate|enable|disable.
func (h *Handler) keyAction(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	id, action := r.PathValue("id"), r.PathValue("action")
	var change func(*policy.APIKey) error
	switch action {
	case "rotate":
	case "enable", "disable":
		enabled := action == "enable"
		change = func(k *policy.APIKey) error { k.Enabled = enabled; return nil }
	default:
		return errNoRoute
	}
	k, secret, err := keys.Update(id, change, action == "rotate")
	return keyResult(w, rec, action, id, k, secret, err)
}

type createKeyRequest struct {
	ID              string     `json:"id"`
	UserID          string     `json:"user_id"`
	OrganizationID  string     `json:"organization_id"`
	Name            string     `json:"name"`
	Description     string     `json:"description"`
	Scopes          []string   `json:"scopes"`
	RateLimit       int        `json:"rate_limit"`
	MaxConcurrency  int        `json:"max_concurrency"`
	TokensPerDay    int64      `json:"tokens_per_day"`
	RequestsPerDay  int64      `json:"requests_per_day"`
	Budget          string     `json:"budget"`
	Enabled         *bool      `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	AllowedBackends []string   `json:"allowed_backends"`
	// Guardrails names providers this key's requests get on top of the
	// operator's.
	Guardrails []string `json:"guardrails"`
}

func (h *Handler) createKey(w *recorder, r *http.Request, rec *record) error {
	keys, err := h.keyRing()
	if err != nil {
		return err
	}
	var req createKeyRequest
	if err := decodeAdminBody(w.body, &req, true); err != nil {
		return err
	}
	scopes, err := policy.ParseScopes(req.Scopes)
	if err != nil {
		return errBadRequest(err.Error())
	}
	if req.ID == "" {
		s := mustSecret()
		req.ID = "key-" + s[len(s)-12:]
	}
	k := policy.APIKey{ID: req.ID, UserID: req.UserID, OrganizationID: req.OrganizationID, Name: req.Name,
		Description: req.Description, Scopes: scopes, RateLimit: req.RateLimit, MaxConcurrency: req.MaxConcurrency, Enabled: req.Enabled == nil || *req.Enabled,
		AllowedBackends: req.AllowedBackends, Guardrails: req.Guardrails, TokensPerDay: req.TokensPerDay, RequestsPerDay: req.RequestsPerDay, Budget: req.Budget}
	if req.ExpiresAt != nil {
		k.ExpiresAt = *req.ExpiresAt
	}
	created, secret, err := keys.Create(k)
	return keyResult(w, rec, "create", req.ID, created, secret, err)
}

// keyResult answers a key operation and writes its audit detail.
func keyResult(w *recorder, rec *record, op, id string, k policy.APIKey, secret string, err error) error {
	rec.detail = "api key " + op + " " + id
	switch {
	case err == nil:
		status := http.StatusOK
		if op == "create" {
			status = http.StatusCreated
		}
		writeJSONValue(w, status, viewOf(k, secret))
		return nil
	case errors.Is(err, ErrKeyNotFound):
		return errNotFound(err.Error())
	case errors.Is(err, ErrKeyExists), errors.Is(err, ErrKeyReadOnly):
		return errConflict(err.Error())
	case errors.Is(err, ErrKeyStoreWrite):
		// The store's path and the OS error are the operator's, not the
		// caller's.
		return errInternal.withDetail(rec.detail + " failed: " + err.Error())
	default:
		return errBadRequest(err.Error()).withDetail(rec.detail + " failed: " + err.Error())
	}
}

// decodeAdminBody reads an admin request's JSON body. strict (the key
// API) refuses unknown fields and an empty body; otherwise (transitions)
// an empty body is an empty object.
func decodeAdminBody(body []byte, v any, strict bool) error {
	var err error
	if strict {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err = dec.Decode(v); err == nil {
			if _, trailing := dec.Token(); trailing != io.EOF {
				return errBadRequest("bad JSON body: data after the JSON object")
			}
		}
	} else {
		if len(body) == 0 {
			body = []byte("{}")
		}
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		return errBadRequest("bad JSON body: " + err.Error())
	}
	return nil
}

// mustSecret is a random value for generated key ids.
func mustSecret() string {
	s, err := policy.NewSecret()
	if err != nil {
		panic(err)
	}
	return s
}
