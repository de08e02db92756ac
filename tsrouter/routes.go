package tsrouter

import (
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/anvil-serving/anvil-router/policy"
)

// serveFunc serves one route and method. It returns an error instead of
// writing one: Handler.fail answers it in the route's envelope.
type serveFunc func(h *Handler, w *recorder, r *http.Request, rec *record) error

// pool says which slot pool a route's requests take.
type pool uint8

const (
	// poolData is the data plane's global slot (--max-concurrency):
	// excess requests get 503 server_busy at once.
	poolData pool = iota
	// poolManagement is a small pool of its own for metrics and health,
	// so they answer while the data plane is saturated.
	poolManagement
	// poolAdmin is the admin API's own pool: an operator can act (disable
	// a key, quiesce a tier) while the data plane is saturated and while
	// unauthenticated scrapers fill poolManagement.
	poolAdmin
)

// route is one entry of the route table: everything the router knows
// about a path. /healthz's list, the API key path classes and the error
// envelopes all come from here.
type route struct {
	// pattern is a net/http.ServeMux pattern without a method: methods
	// are checked by dispatch, so a 405 answers in the route's envelope.
	pattern string
	// methods maps each allowed method to its handler; GET answers HEAD.
	methods map[string]serveFunc
	// env is the caller's dialect: it picks the error envelope.
	env envelope
	// class is what API keys need here (policy.Admit): whether blocking
	// mode requires a key and which scope.
	class policy.PathClass
	pool  pool
	// admin routes need isAdmin, checked before the method, so other
	// callers do not learn the methods they take.
	admin bool
	// noStore marks views no cache may keep.
	noStore bool
	// advertise lists the route in /healthz's "routes".
	advertise bool
	// configured, if set, says whether the route exists under this
	// config; where it does not, the path is 404 like any unknown one.
	configured func(*Handler) bool
	// body reads the request body of a POST or PUT (nil: none is read),
	// before the route takes its slot.
	body bodyReader
	// ui marks the web UI's routes (webui.go): they need no router token
	// and offer a login instead.
	ui bool
	// at, if set, is the pattern under this config (the UI's
	// configurable prefix); pattern is its default.
	at func(h *Handler, pattern string) string
	// metered routes run a model: usage accounting counts them and the
	// caller's day budget gates them.
	metered bool
}

// bodyReader reads a route's request body with its limits.
type bodyReader func(h *Handler, w http.ResponseWriter, r *http.Request) ([]byte, error)

// apiBody is an API request body, up to --max-body-bytes. An empty body is
// an empty object, as the Python router took it.
func apiBody(h *Handler, w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := h.readBody(w, r, h.maxBody)
	if err == nil && len(body) == 0 {
		return []byte("{}"), nil
	}
	return body, err
}

// adminBody is an admin API request body (JSON, small).
func adminBody(h *Handler, w http.ResponseWriter, r *http.Request) ([]byte, error) {
	return h.readBody(w, r, maxAdminBody)
}

// routes is the route table.
func routes() []*route {
	get := func(f serveFunc) map[string]serveFunc { return map[string]serveFunc{http.MethodGet: f} }
	post := func(f serveFunc) map[string]serveFunc { return map[string]serveFunc{http.MethodPost: f} }
	inference := func(pattern string, env envelope, f serveFunc) *route {
		return &route{pattern: pattern, methods: post(f), env: env, class: policy.PathInference, advertise: true, body: apiBody, metered: true}
	}
	metadata := func(pattern string, f serveFunc) *route {
		return &route{pattern: pattern, methods: get(f), env: envGeneric, class: policy.PathMetadata, noStore: true, advertise: true}
	}
	// Admin routes have the management pool: they keep answering while
	// the data plane is saturated.
	admin := func(pattern string, methods map[string]serveFunc) *route {
		return &route{pattern: pattern, methods: methods, env: envGeneric, class: policy.PathAdmin, admin: true, noStore: true,
			pool: poolAdmin, body: adminBody}
	}
	purpose := func(pattern, kind string) *route {
		rt := inference(pattern, envGeneric, func(h *Handler, w *recorder, r *http.Request, rec *record) error {
			return h.purpose(w, r, rec, kind)
		})
		rt.configured = func(h *Handler) bool { return len(h.backends.PurposeModels(kind)) > 0 }
		return rt
	}
	audio := func(pattern, purpose string) *route {
		rt := inference(pattern, envGeneric, func(h *Handler, w *recorder, r *http.Request, rec *record) error {
			return h.serveAudio(w, r, rec, purpose)
		})
		rt.configured = func(h *Handler) bool { return h.audioGW.bound(purpose) }
		rt.body = (*Handler).readAudioBody
		return rt
	}
	// The web UI: any caller who passed the door sees their own page;
	// the UI checks the admin right for the admin pages itself.
	ui := func(pattern string, f serveFunc, configured func(*Handler) bool) *route {
		return &route{pattern: pattern, methods: map[string]serveFunc{http.MethodGet: f, http.MethodPost: f}, env: envGeneric,
			class: policy.PathMetadata, pool: poolManagement, body: adminBody, ui: true, configured: configured, at: (*Handler).uiPattern}
	}
	return []*route{
		{pattern: "/healthz", methods: get((*Handler).health), env: envGeneric, class: policy.PathOpen, pool: poolManagement},
		{pattern: "/health", methods: get((*Handler).health), env: envGeneric, class: policy.PathOpen, pool: poolManagement},

		inference("/v1/chat/completions", envOpenAI, (*Handler).chat),
		inference("/v1/completions", envOpenAI, (*Handler).completions),
		inference("/v1/messages", envAnthropic, (*Handler).messages),
		unmetered(inference("/v1/messages/count_tokens", envAnthropic, (*Handler).countTokens)),
		inference("/v1/responses", envResponses, (*Handler).responses),
		// Anthropic clients whose base URL ends in /anthropic.
		inference("/anthropic/v1/messages", envAnthropic, (*Handler).messages),
		unmetered(inference("/anthropic/v1/messages/count_tokens", envAnthropic, (*Handler).countTokens)),
		purpose("/v1/embeddings", "embedding"),
		purpose("/v1/rerank", "rerank"),
		audio("/v1/audio/transcriptions", "stt"),
		audio("/v1/audio/speech", "tts"),

		{pattern: "/v1/models", methods: get((*Handler).models), env: envGeneric, class: policy.PathModels},
		{pattern: "/v1/models/{id...}", methods: get((*Handler).modelByID), env: envGeneric, class: policy.PathModels},
		{pattern: "/v1/models/extended", methods: get((*Handler).modelsExtended), env: envGeneric, class: policy.PathModels, noStore: true, advertise: true},
		{pattern: "/v1/models/extended/{id...}", methods: get((*Handler).modelExtended), env: envGeneric, class: policy.PathModels, noStore: true},
		{pattern: "/anthropic/v1/models", methods: get((*Handler).anthropicModels), env: envAnthropic, class: policy.PathModels, advertise: true},
		{pattern: "/anthropic/v1/models/{id...}", methods: get((*Handler).anthropicModelByID), env: envAnthropic, class: policy.PathModels},
		metadata("/v1/models/capabilities", (*Handler).capabilities),
		metadata("/v1/models/fingerprints", (*Handler).fingerprints),
		metadata("/v1/models/capacity", (*Handler).capacity),
		metadata("/v1/health/tiers", (*Handler).healthTiers),
		metadata("/v1/router/status", (*Handler).routerStatus),
		{pattern: "/metrics", methods: get((*Handler).serveMetrics), env: envGeneric, class: policy.PathMetrics, noStore: true, advertise: true, pool: poolManagement},

		advertised(admin("/v1/decisions", get((*Handler).serveDecisions))),
		advertised(admin("/v1/stats", get((*Handler).serveStats))),
		advertised(admin("/v1/requests/{request_id...}", get((*Handler).serveRequest))),
		admin("/v1/admin/transition", map[string]serveFunc{
			http.MethodGet: (*Handler).transitionStatus, http.MethodPost: (*Handler).transition}),
		admin("/admin/api-keys", map[string]serveFunc{
			http.MethodGet: (*Handler).listKeys, http.MethodPost: (*Handler).createKey}),
		admin("/admin/api-keys/{id}", map[string]serveFunc{
			http.MethodGet: (*Handler).getKey, http.MethodPut: (*Handler).updateKey, http.MethodDelete: (*Handler).deleteKey}),
		admin("/admin/api-keys/{id}/{action}", post((*Handler).keyAction)),
		admin("/admin/config", get((*Handler).serveConfig)),

		ui("/webui", (*Handler).serveUI, (*Handler).uiServed),
		ui("/webui/{page...}", (*Handler).serveUI, (*Handler).uiServed),
		ui("/ui", (*Handler).serveUIRedirect, (*Handler).uiRedirects),
		ui("/ui/{rest...}", (*Handler).serveUIRedirect, (*Handler).uiRedirects),
		admin("/admin/guardrails", get((*Handler).serveGuardrails)),
		usageView(admin("/admin/stats", get((*Handler).serveAdminStats))),
		usageView(admin("/admin/stats/usage", get((*Handler).serveStatsUsage))),
		usageView(admin("/admin/stats/reset", post((*Handler).resetStats))),
		usageView(&route{pattern: "/v1/usage", methods: get((*Handler).serveMyUsage), env: envGeneric, class: policy.PathModels, noStore: true, advertise: true}),
	}
}

func unmetered(rt *route) *route { rt.metered = false; return rt }

// usageView is a route that exists while usage accounting is on.
func usageView(rt *route) *route {
	rt.configured = func(h *Handler) bool { return h.usageOn() }
	return rt
}

func advertised(rt *route) *route { rt.advertise = true; return rt }

// noRoute answers every path the table does not serve: after the door and
// the credentials, like any route, so unknown paths reveal nothing to an
// unauthenticated caller. PathOther fails closed in blocking mode.
var noRoute = &route{pattern: "/", env: envGeneric, class: policy.PathOther}

// handler returns the route's handler for method (GET's for HEAD).
func (rt *route) handler(method string) (serveFunc, bool) {
	if method == http.MethodHead {
		method = http.MethodGet
	}
	f, ok := rt.methods[method]
	return f, ok
}

// allow is the Allow header of the route.
func (rt *route) allow() string {
	return strings.Join(slices.Sorted(func(yield func(string) bool) {
		for m := range rt.methods {
			if !yield(m) {
				return
			}
		}
	}), ", ")
}

// routedPath is the path as the table matches it: trailing slashes
// trimmed (so /v1/models/ is /v1/models), and "" for a path that is not
// clean ("//", "/./", "/../"): ServeMux would answer those with a
// redirect before anyone authenticated; here they are unknown paths.
func routedPath(p string) string {
	if len(p) > 1 {
		p = strings.TrimRight(p, "/")
		if p == "" {
			p = "/"
		}
	}
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return ""
	}
	return p
}

// buildMux registers the routes that exist under this config. Each
// pattern's handler is dispatch for its route.
func (h *Handler) buildMux() {
	h.mux = http.NewServeMux()
	for _, rt := range routes() {
		if rt.configured != nil && !rt.configured(h) {
			continue
		}
		if rt.at != nil {
			rt.pattern = rt.at(h, rt.pattern)
		}
		h.served = append(h.served, rt)
		h.mux.Handle(rt.pattern, h.endpoint(rt))
	}
	h.mux.Handle(noRoute.pattern, h.endpoint(noRoute))
}

// advertisedPaths is /healthz's "routes": the advertised routes this
// config serves, sorted, with wildcards as {name}.
func (h *Handler) advertisedPaths() []string {
	var out []string
	for _, rt := range h.served {
		if rt.advertise {
			out = append(out, strings.ReplaceAll(rt.pattern, "...}", "}"))
		}
	}
	slices.Sort(out)
	return out
}

// routeOf is the route that serves path p under this config (noRoute if
// none).
func (h *Handler) routeOf(p string) *route {
	rp := routedPath(p)
	if rp == "" {
		return noRoute
	}
	_, pattern := h.mux.Handler(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: rp}})
	for _, rt := range h.served {
		if rt.pattern == pattern {
			return rt
		}
	}
	return noRoute
}
