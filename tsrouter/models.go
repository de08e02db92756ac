package tsrouter

import (
	"net/http"
	"strconv"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
)

// The model listings. Every listing shows only the aliases the caller may
// use (its grants and key), in config order:
//   - /v1/models and /v1/models/{id}: OpenAI's list shape with the
//     context window and output cap; in Anthropic's shape when the request
//     carries anthropic-version (what the Anthropic SDKs send);
//   - /anthropic/v1/models[/{id}]: always Anthropic's shape (clients whose
//     base URL ends in /anthropic);
//   - /v1/models/extended[/{id}]: what a client needs to choose a model —
//     context, output cap, tools, modalities, thinking, dialect, readiness.

// modelCreated is the fixed creation time of every alias (aliases are
// config, not artefacts with a history): 2023-11-14T22:13:20Z.
const modelCreated = 1700000000

// modelEntry is one alias of the caller's listing.
type modelEntry struct {
	alias string
	tier  *backends.Tier
}

// modelsFor is the aliases the caller may use, in config order (may nil:
// all of them).
func modelsFor(set *backends.Set, may func(string) bool) []modelEntry {
	var out []modelEntry
	for _, r := range set.Routes() {
		if may != nil && !may(r.Alias) {
			continue
		}
		t, _ := set.Lookup(r.Alias)
		out = append(out, modelEntry{r.Alias, t})
	}
	return out
}

// modelFor is one alias the caller may use.
func (h *Handler) modelFor(rec *record, id string) (modelEntry, error) {
	alias := backends.NormalizeAlias(id)
	t, ok := h.backends.Lookup(alias)
	if !ok || !rec.principal.MayUseModel(alias) {
		return modelEntry{}, errModelUnknown
	}
	return modelEntry{alias, t}, nil
}

// mayList is the caller's model filter (nil when it may use every alias).
func mayList(rec *record) func(string) bool {
	if rec.principal.AllModels {
		return nil
	}
	return rec.principal.MayUseModel
}

// openAIModel is an entry of the OpenAI-shaped /v1/models.
type openAIModel struct {
	ID              string `json:"id"`
	Object          string `json:"object"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	OwnedBy         string `json:"owned_by"`
	Created         int64  `json:"created"`
	ContextWindow   int    `json:"context_window"`
	MaxOutputTokens *int   `json:"max_output_tokens"`
}

func (m modelEntry) openAI() openAIModel {
	return openAIModel{
		ID: m.alias, Object: "model", Name: m.alias,
		Description: "Configured serving capability", OwnedBy: "anvil-serving",
		Created: modelCreated, ContextWindow: m.tier.ContextLimit, MaxOutputTokens: intPtr(m.tier.MaxOutputTokens),
	}
}

// anthropicModel is an entry of Anthropic's model list (type "model",
// display_name, created_at), with the context window and output cap in
// the same fields as /v1/models.
type anthropicModel struct {
	Type            string `json:"type"`
	ID              string `json:"id"`
	DisplayName     string `json:"display_name"`
	CreatedAt       string `json:"created_at"`
	ContextWindow   int    `json:"context_window"`
	MaxOutputTokens *int   `json:"max_output_tokens"`
}

func (m modelEntry) anthropic() anthropicModel {
	return anthropicModel{
		Type: "model", ID: m.alias, DisplayName: m.alias,
		CreatedAt:     time.Unix(modelCreated, 0).UTC().Format(time.RFC3339),
		ContextWindow: m.tier.ContextLimit, MaxOutputTokens: intPtr(m.tier.MaxOutputTokens),
	}
}

func intPtr(n int) *int {
	if n <= 0 {
		return nil
	}
	return &n
}

// modelsJSON renders the OpenAI-shaped /v1/models: once for callers who
// may use every alias (byte-stable for a config), per request for callers
// a grant or key restricts (may; nil = all).
func modelsJSON(set *backends.Set, may func(string) bool) []byte {
	data := []openAIModel{}
	for _, m := range modelsFor(set, may) {
		data = append(data, m.openAI())
	}
	return mustJSON(map[string]any{"object": "list", "data": data})
}

// anthropicStyle reports whether a request to /v1/models wants Anthropic's
// shape: the Anthropic SDKs send anthropic-version on every request.
func anthropicStyle(r *http.Request) bool { return r.Header.Get("Anthropic-Version") != "" }

// models serves GET /v1/models.
func (h *Handler) models(w *recorder, r *http.Request, rec *record) error {
	if anthropicStyle(r) {
		return h.anthropicModels(w, r, rec)
	}
	if rec.principal.AllModels {
		writeJSON(w, http.StatusOK, h.modelsBody)
	} else {
		writeJSON(w, http.StatusOK, modelsJSON(h.backends, rec.principal.MayUseModel))
	}
	return nil
}

// modelByID serves GET /v1/models/{id}: the alias's entry, or 404 when it
// is unknown or the caller may not use it.
func (h *Handler) modelByID(w *recorder, r *http.Request, rec *record) error {
	m, err := h.modelFor(rec, r.PathValue("id"))
	if err != nil {
		return err
	}
	if anthropicStyle(r) {
		writeJSONValue(w, http.StatusOK, m.anthropic())
	} else {
		writeJSONValue(w, http.StatusOK, m.openAI())
	}
	return nil
}

// anthropicModels serves Anthropic's list: ?limit= (1–1000, default 20)
// and the after_id / before_id cursors, with has_more, first_id, last_id.
func (h *Handler) anthropicModels(w *recorder, r *http.Request, rec *record) error {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return errBadRequest("limit must be an integer from 1 to 1000")
		}
		limit = n
	}
	all := modelsFor(h.backends, mayList(rec))
	lo, hi := 0, len(all)
	if id := q.Get("after_id"); id != "" {
		lo = indexOfModel(all, id) + 1
	}
	if id := q.Get("before_id"); id != "" {
		hi = max(indexOfModel(all, id), 0)
	}
	if lo > hi {
		lo = hi
	}
	page := all[lo:hi]
	hasMore := len(page) > limit
	if hasMore {
		if q.Get("before_id") != "" {
			page = page[len(page)-limit:]
		} else {
			page = page[:limit]
		}
	}
	data := []anthropicModel{}
	for _, m := range page {
		data = append(data, m.anthropic())
	}
	var first, last *string
	if len(data) > 0 {
		first, last = &data[0].ID, &data[len(data)-1].ID
	}
	writeJSONValue(w, http.StatusOK, struct {
		Data    []anthropicModel `json:"data"`
		HasMore bool             `json:"has_more"`
		FirstID *string          `json:"first_id"`
		LastID  *string          `json:"last_id"`
	}{data, hasMore, first, last})
	return nil
}

// indexOfModel is the position of alias id in the list (-1 if absent: a
// cursor the caller may not see is the start of the list).
func indexOfModel(all []modelEntry, id string) int {
	id = backends.NormalizeAlias(id)
	for i, m := range all {
		if m.alias == id {
			return i
		}
	}
	return -1
}

// anthropicModelByID serves /anthropic/v1/models/{id}.
func (h *Handler) anthropicModelByID(w *recorder, r *http.Request, rec *record) error {
	m, err := h.modelFor(rec, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSONValue(w, http.StatusOK, m.anthropic())
	return nil
}

// extendedModel is an entry of /v1/models/extended.
func (m modelEntry) extended() map[string]any {
	t := m.tier
	modalities, thinking, _, images, videos := t.Capabilities()
	rd := t.Readiness()
	return map[string]any{
		"id": m.alias, "object": "model", "owned_by": "anvil-serving", "created": modelCreated,
		"context_window":    t.ContextLimit,
		"max_output_tokens": intPtr(t.MaxOutputTokens),
		"tools":             t.ToolSupport,
		"modalities":        modalities,
		"thinking":          nilIfEmpty(thinking),
		"limits":            map[string]any{"images_per_request": images, "video_per_request": videos},
		"dialect":           t.Dialect,
		"ready":             rd.Available,
		"readiness":         readinessView(rd),
	}
}

// modelsExtended serves GET /v1/models/extended.
func (h *Handler) modelsExtended(w *recorder, r *http.Request, rec *record) error {
	data := []map[string]any{}
	for _, m := range modelsFor(h.backends, mayList(rec)) {
		data = append(data, m.extended())
	}
	writeJSONValue(w, http.StatusOK, map[string]any{"object": "list", "data": data})
	return nil
}

// modelExtended serves GET /v1/models/extended/{id}.
func (h *Handler) modelExtended(w *recorder, r *http.Request, rec *record) error {
	m, err := h.modelFor(rec, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSONValue(w, http.StatusOK, m.extended())
	return nil
}
