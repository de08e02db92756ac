package tsrouter

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
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
	Enabled         bool       `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	AllowedBackends []string   `json:"allowed_backends"`
	CreatedAt       *time.Time `json:"created_at,omitempty"`
	Source          string     `json:"source"`
}

func viewOf(k policy.APIKey, secret string) keyView {
	v := keyView{ID: k.ID, Key: k.Masked(), UserID: k.UserID, OrganizationID: k.OrganizationID, Name: k.Name,
		Description: k.Description, RateLimit: k.RateLimit, Enabled: k.Enabled, AllowedBackends: k.AllowedBackends, Source: k.Source}
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

// adminKeys serves /admin/api-keys[/{id}[/rotate|enable|disable]]. Every
// operation needs admin rights and leaves an audit line naming who did
// what to which key id — never the key.
func (h *Handler) adminKeys(w http.ResponseWriter, r *http.Request, rec *record, path string) {
	if !h.isAdmin(r, rec) {
		h.denyAdmin(w, rec, path)
		return
	}
	if h.keys == nil {
		writeError(w, envGeneric, errNoRoute(path))
		return
	}
	rest := strings.Trim(strings.TrimPrefix(path, "/admin/api-keys"), "/")
	id, action, _ := strings.Cut(rest, "/")
	switch {
	case id == "" && isGet(r.Method):
		views := []keyView{}
		for _, k := range h.keys.Keys() {
			views = append(views, viewOf(k, ""))
		}
		writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": views})
	case id == "" && r.Method == http.MethodPost:
		h.createKey(w, r, rec)
	case id != "" && action == "" && isGet(r.Method):
		k, ok := h.keys.Get(id)
		if !ok {
			writeError(w, envGeneric, &apiError{Status: http.StatusNotFound, Type: "not_found", Message: "api key not found"})
			return
		}
		writeJSONValue(w, http.StatusOK, viewOf(k, ""))
	case id != "" && action == "" && r.Method == http.MethodPut:
		var upd policy.KeyUpdate
		if aerr := decodeAdminBody(r, &upd); aerr != nil {
			writeError(w, envGeneric, aerr)
			return
		}
		k, _, err := h.keys.Update(id, func(k *policy.APIKey) error {
			next, err := upd.Apply(*k)
			*k = next
			return err
		}, false)
		h.keyResult(w, rec, "update", id, k, "", err)
	case id != "" && action == "" && r.Method == http.MethodDelete:
		err := h.keys.Delete(id)
		if err == nil {
			rec.detail = "api key delete " + id
			writeJSONValue(w, http.StatusOK, map[string]any{"deleted": true, "id": id})
			return
		}
		h.keyResult(w, rec, "delete", id, policy.APIKey{}, "", err)
	case id != "" && r.Method == http.MethodPost && (action == "rotate" || action == "enable" || action == "disable"):
		var change func(*policy.APIKey) error
		if action != "rotate" {
			enabled := action == "enable"
			change = func(k *policy.APIKey) error { k.Enabled = enabled; return nil }
		}
		k, secret, err := h.keys.Update(id, change, action == "rotate")
		h.keyResult(w, rec, action, id, k, secret, err)
	default:
		writeError(w, envGeneric, errNoRoute(path))
	}
}

type createKeyRequest struct {
	ID              string     `json:"id"`
	UserID          string     `json:"user_id"`
	OrganizationID  string     `json:"organization_id"`
	Name            string     `json:"name"`
	Description     string     `json:"description"`
	Scopes          []string   `json:"scopes"`
	RateLimit       int        `json:"rate_limit"`
	Enabled         *bool      `json:"enabled"`
	ExpiresAt       *time.Time `json:"expires_at"`
	AllowedBackends []string   `json:"allowed_backends"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, rec *record) {
	var req createKeyRequest
	if aerr := decodeAdminBody(r, &req); aerr != nil {
		writeError(w, envGeneric, aerr)
		return
	}
	scopes, err := policy.ParseScopes(req.Scopes)
	if err != nil {
		writeError(w, envGeneric, errBadRequest(err.Error()))
		return
	}
	if req.ID == "" {
		s := mustSecret()
		req.ID = "key-" + s[len(s)-12:]
	}
	k := policy.APIKey{ID: req.ID, UserID: req.UserID, OrganizationID: req.OrganizationID, Name: req.Name,
		Description: req.Description, Scopes: scopes, RateLimit: req.RateLimit, Enabled: req.Enabled == nil || *req.Enabled,
		AllowedBackends: req.AllowedBackends}
	if req.ExpiresAt != nil {
		k.ExpiresAt = *req.ExpiresAt
	}
	created, secret, err := h.keys.Create(k)
	h.keyResult(w, rec, "create", req.ID, created, secret, err)
}

// keyResult answers a key operation and writes its audit detail.
func (h *Handler) keyResult(w http.ResponseWriter, rec *record, op, id string, k policy.APIKey, secret string, err error) {
	rec.detail = "api key " + op + " " + id
	switch {
	case err == nil:
		status := http.StatusOK
		if op == "create" {
			status = http.StatusCreated
		}
		writeJSONValue(w, status, viewOf(k, secret))
	case errors.Is(err, ErrKeyNotFound):
		writeError(w, envGeneric, &apiError{Status: http.StatusNotFound, Type: "not_found", Message: err.Error()})
	case errors.Is(err, ErrKeyExists), errors.Is(err, ErrKeyReadOnly):
		writeError(w, envGeneric, &apiError{Status: http.StatusConflict, Type: "conflict", Message: err.Error()})
	default:
		rec.detail += " failed: " + err.Error()
		writeError(w, envGeneric, errBadRequest(err.Error()))
	}
}

func decodeAdminBody(r *http.Request, v any) *apiError {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil || len(body) > maxAdminBody {
		return errBadRequest("could not read request body")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
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
