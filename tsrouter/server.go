// Package tsrouter is the router's front door: the HTTP handler every
// listener shares (dev loopback listener now, the tailnet listener next),
// authentication, routing of each path, the caller-facing wire dialects and
// the one table that maps failures to statuses.
package tsrouter

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// Defaults of the process-level limits (contract §1.8).
const (
	DefaultMaxBodyBytes   = 32 << 20
	DefaultMaxConcurrency = 64
)

// Options configure a Handler.
type Options struct {
	// Backends are the routable tiers. Required.
	Backends *backends.Set
	// Token is the router token; the zero Token means auth is off.
	Token policy.Token
	// Logger receives one line per request and operator detail about
	// failures. Never secrets. Defaults to slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes caps request bodies (default 32 MiB).
	MaxBodyBytes int64
	// MaxConcurrency caps requests in flight across the data plane; excess
	// requests get 503 server_busy at once rather than queueing (default 64).
	MaxConcurrency int
	// Version is reported by /v1/router/status.
	Version string
	// Recorder keeps the decision log; nil means an in-memory ring only.
	Recorder *telemetry.Recorder
	// Keys are the API keys ([api_keys]); nil means none are configured.
	Keys *KeyRing
	// AdminToken is [admin].auth_env's token; when set it replaces the
	// router token as the admin credential (sent as X-Admin-Token).
	AdminToken policy.Token
}

// Handler serves the router's HTTP API. Create it with New.
type Handler struct {
	mgmt       chan struct{}
	mutation   sync.Mutex
	backends   *backends.Set
	token      policy.Token
	log        *slog.Logger
	maxBody    int64
	slots      chan struct{}
	healthBody []byte
	modelsBody []byte
	version    string
	started    time.Time
	configHash string
	decisions  *telemetry.Recorder
	metrics    *telemetry.Metrics
	limiter    *policy.RateLimiter
	keys       *KeyRing
	adminToken policy.Token
	audioGW    *audioGateway
}

// routes lists the paths /healthz advertises.
var routes = []string{
	"/metrics", "/v1/chat/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/decisions", "/v1/health/tiers", "/v1/models/capabilities",
	"/v1/models/capacity", "/v1/models/fingerprints", "/v1/requests/{request_id}", "/v1/router/status", "/v1/stats",
}

// New returns the handler.
func New(opts Options) *Handler {
	h := &Handler{
		backends: opts.Backends,
		token:    opts.Token,
		log:      opts.Logger,
		maxBody:  opts.MaxBodyBytes,
		version:  opts.Version,
		started:  time.Now(),
	}
	if h.version == "" {
		h.version = "dev"
	}
	h.configHash = opts.Backends.ConfigHash()
	h.decisions = opts.Recorder
	if h.decisions == nil {
		// Without a log path New cannot fail.
		h.decisions, _ = telemetry.New(telemetry.Options{Aliases: aliasesOf(opts.Backends), Logger: h.log})
	}
	var tierIDs []string
	for _, t := range opts.Backends.Tiers() {
		tierIDs = append(tierIDs, t.ID)
	}
	m, err := telemetry.NewMetrics(h.decisions, telemetry.MetricsOptions{Tiers: tierIDs, TierGauges: h.tierGauges, Start: h.started})
	if err != nil {
		panic(err) // only a programming error (duplicate registration) gets here
	}
	h.metrics = m
	h.limiter = policy.NewRateLimiter()
	h.keys = opts.Keys
	h.adminToken = opts.AdminToken
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	n := opts.MaxConcurrency
	if n <= 0 {
		n = DefaultMaxConcurrency
	}
	h.slots = make(chan struct{}, n)
	h.mgmt = make(chan struct{}, managementSlots)
	served := slices.Clone(routes)
	for path, kind := range purposePaths {
		if len(opts.Backends.PurposeModels(kind)) > 0 {
			served = append(served, path)
		}
	}
	h.audioGW = newAudioGateway(opts.Backends, h.maxBody, h.token.Enabled(), h.log)
	served = append(served, h.audioGW.paths()...)
	h.healthBody = mustJSON(map[string]any{
		"status":   "ok",
		"dialects": []string{"anthropic", "openai", "responses"},
		"routes":   slices.Sorted(slices.Values(served)),
	})
	h.modelsBody = modelsJSON(opts.Backends, nil)
	return h
}

// metadataRoutes are the read-only lifecycle views.
var metadataRoutes = map[string]func(*Handler, http.ResponseWriter, *http.Request){
	"/v1/models/capabilities": (*Handler).capabilities,
	"/v1/models/fingerprints": (*Handler).fingerprints,
	"/v1/models/capacity":     (*Handler).capacity,
	"/v1/health/tiers":        (*Handler).healthTiers,
	"/v1/router/status":       (*Handler).routerStatus,
}

// ServeHTTP serves the dev listener: loopback only, no tailnet identity,
// every model allowed, the router token required when configured.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, doorDev, nil)
}

// serve dispatches one request that came through door d. Order matters and
// is part of the contract: liveness first (never gated), then who the
// caller is (tailnet identity, fail closed), the global slot, the token —
// all before any route lookup, so unknown paths do not reveal what exists.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, d door, tn *tailnetDoor) {
	rw := &recorder{ResponseWriter: w}
	rw.rec.start = time.Now()
	rw.rec.door = d
	defer h.audit(rw, r)
	w = rw
	w.Header().Set("Server", "anvil")
	path := r.URL.Path
	if len(path) > 1 {
		path = strings.TrimRight(path, "/")
	}
	if path == "/healthz" && isGet(r.Method) {
		rw.rec.quiet = true
		writeJSON(w, http.StatusOK, h.healthBody)
		return
	}
	rec := &rw.rec
	// Every response carries the request id the decision log keys on: the
	// caller's own when it sent a usable one, else a generated one.
	rec.requestID, rec.workbenchRunID, rec.taskID, _ = telemetry.Correlation(r.Header)
	w.Header()[telemetry.HeaderRequestID] = []string{rec.requestID}
	if envelopeFor(path) == envAnthropic {
		// Anthropic's SDKs read the id from request-id (message._request_id,
		// APIError.requestID), not from X-Request-Id.
		w.Header()[telemetry.HeaderRequestIDLegacy] = []string{rec.requestID}
	}
	switch d {
	case doorLocal:
		// Without local_api the loopback listener is a health endpoint only.
		writeError(w, envGeneric, errNoRoute(path))
		return
	case doorTailnet:
		p, err := tn.principal(r)
		if err != nil {
			rec.detail = err.Error()
			drainSmallBody(r, h.maxBody)
			writeError(w, envelopeFor(path), errForbidden)
			return
		}
		rec.principal = p
	default:
		rec.principal = unrestricted
	}
	// The router token and API keys: who the caller is beyond the door.
	if aerr := h.admitCredentials(r, rec, d, path); aerr != nil {
		drainSmallBody(r, h.maxBody)
		writeError(w, envelopeFor(path), aerr)
		return
	}
	// Rate limits of the caller's grant and key: enforced, not just parsed.
	if lims := rec.principal.Limits(); lims[0].PerMinute > 0 || lims[1].PerMinute > 0 {
		if ok, wait := h.limiter.AllowAll(lims[:], time.Now()); !ok {
			rec.detail = "rate limited"
			drainSmallBody(r, h.maxBody)
			writeError(w, envelopeFor(path), errRateLimited(policy.RetryAfterSeconds(wait)))
			return
		}
	}
	// Management has its own small pool: an operator must be able to
	// quiesce a tier while the data plane is saturated.
	if path != "/v1/admin/transition" {
		select {
		case h.slots <- struct{}{}:
			defer func() { <-h.slots }()
		default:
			writeError(w, envelopeFor(path), errBusy)
			return
		}
	}
	switch path {
	case "/v1/chat/completions":
		if r.Method != http.MethodPost {
			allow(w, envOpenAI, "POST")
			return
		}
		h.chat(rw, r, rec)
	case "/v1/models":
		if !isGet(r.Method) {
			allow(w, envGeneric, "GET")
			return
		}
		if rec.principal.AllModels {
			writeJSON(w, http.StatusOK, h.modelsBody)
		} else {
			writeJSON(w, http.StatusOK, modelsJSON(h.backends, rec.principal.MayUseModel))
		}
	case "/v1/admin/transition":
		h.transition(w, r, rec)
	case "/v1/messages":
		if r.Method != http.MethodPost {
			allow(w, envAnthropic, "POST")
			return
		}
		h.messages(rw, r, rec)
	case "/v1/messages/count_tokens":
		if r.Method != http.MethodPost {
			allow(w, envAnthropic, "POST")
			return
		}
		h.countTokens(w, r, rec)
	case "/v1/responses":
		if r.Method != http.MethodPost {
			allow(w, envResponses, "POST")
			return
		}
		h.responses(rw, r, rec)
	case "/v1/embeddings", "/v1/rerank":
		if r.Method != http.MethodPost {
			allow(w, envGeneric, "POST")
			return
		}
		h.purpose(rw, r, rec, purposePaths[path])
	case "/v1/audio/transcriptions", "/v1/audio/speech":
		// Unbound endpoints are 404 for every method; serveAudio decides.
		h.serveAudio(rw, r, rec, path)
	case "/v1/decisions", "/v1/stats":
		if !isGet(r.Method) {
			allow(w, envGeneric, "GET")
			return
		}
		if !h.isAdmin(r, rec) {
			h.denyAdmin(w, rec, path)
			return
		}
		if path == "/v1/decisions" {
			h.decisions.ServeDecisions(w, r)
		} else {
			h.decisions.ServeStats(w, r)
		}
	case "/metrics":
		if !isGet(r.Method) {
			allow(w, envGeneric, "GET")
			return
		}
		h.serveMetrics(w, r)
	case "/v1/models/capabilities", "/v1/models/fingerprints", "/v1/models/capacity", "/v1/health/tiers", "/v1/router/status":
		if !isGet(r.Method) {
			allow(w, envGeneric, "GET")
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		metadataRoutes[path](h, w, r)
	case "/health", "/healthz":
		if !isGet(r.Method) {
			allow(w, envGeneric, "GET")
			return
		}
		writeJSON(w, http.StatusOK, h.healthBody)
	default:
		if path == "/admin/api-keys" || strings.HasPrefix(path, "/admin/api-keys/") {
			h.adminKeys(w, r, rec, path)
			return
		}
		if id, ok := strings.CutPrefix(path, "/v1/models/"); ok && isGet(r.Method) {
			h.modelByID(w, rec, id)
			return
		}
		if id, ok := strings.CutPrefix(path, "/v1/requests/"); ok && isGet(r.Method) {
			if !h.isAdmin(r, rec) {
				h.denyAdmin(w, rec, path)
				return
			}
			if dec, err := url.PathUnescape(id); err == nil && !strings.Contains(dec, "/") {
				h.decisions.ServeRequest(w, r, dec)
				return
			}
			h.decisions.ServeRequest(w, r, "")
			return
		}
		writeError(w, envGeneric, errNoRoute(path))
	}
}

// modelByID serves GET /v1/models/{id}: the alias's entry of /v1/models,
// or 404 when it is unknown or the caller may not use it.
func (h *Handler) modelByID(w http.ResponseWriter, rec *record, id string) {
	alias := backends.NormalizeAlias(id)
	if _, ok := h.backends.Lookup(alias); !ok || !rec.principal.MayUseModel(alias) {
		writeError(w, envGeneric, errModelUnknown)
		return
	}
	var list struct {
		Data []json.RawMessage `json:"data"`
	}
	json.Unmarshal(modelsJSON(h.backends, func(a string) bool { return a == alias }), &list)
	writeJSON(w, http.StatusOK, list.Data[0])
}

// Keys is the API key ring (nil when none is configured).
func (h *Handler) Keys() *KeyRing { return h.keys }

// Close flushes the decision log.
func (h *Handler) Close() error { return h.decisions.Close() }

func aliasesOf(set *backends.Set) []string {
	var out []string
	for _, r := range set.Routes() {
		out = append(out, r.Alias)
	}
	return out
}

func isGet(m string) bool { return m == http.MethodGet || m == http.MethodHead }

func allow(w http.ResponseWriter, env envelope, methods string) {
	w.Header().Set("Allow", methods)
	writeError(w, env, errMethod(methods))
}

// envelopeFor picks the error shape for failures raised before the
// request is parsed (auth, busy, rate limits): each dialect's paths answer
// in their own, so the SDKs raise their typed errors (the Python router's
// 401 on /v1/messages was not Anthropic-shaped).
func envelopeFor(path string) envelope {
	switch path {
	case "/v1/chat/completions":
		return envOpenAI
	case "/v1/messages", "/v1/messages/count_tokens":
		return envAnthropic
	case "/v1/responses":
		return envResponses
	}
	return envGeneric
}

// drainSmallBody reads a rejected request's body if it is small enough, so
// the keep-alive connection stays usable; a large one is left and the
// server closes the connection.
func drainSmallBody(r *http.Request, max int64) {
	if r.Body == nil || r.ContentLength < 0 || r.ContentLength > max {
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, r.ContentLength))
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// modelsJSON renders /v1/models: once for callers who may use every alias
// (byte-stable for a config), per request for callers a grant restricts
// to the aliases allowed (may; nil = all).
func modelsJSON(set *backends.Set, may func(string) bool) []byte {
	type model struct {
		ID              string `json:"id"`
		Object          string `json:"object"`
		Name            string `json:"name"`
		Description     string `json:"description"`
		OwnedBy         string `json:"owned_by"`
		Created         int64  `json:"created"`
		ContextWindow   int    `json:"context_window"`
		MaxOutputTokens *int   `json:"max_output_tokens"`
	}
	data := []model{}
	for _, r := range set.Routes() {
		if may != nil && !may(r.Alias) {
			continue
		}
		t, _ := set.Lookup(r.Alias)
		m := model{
			ID: r.Alias, Object: "model", Name: r.Alias,
			Description: "Configured serving capability", OwnedBy: "anvil-serving",
			Created: 1700000000, ContextWindow: t.ContextLimit,
		}
		if t.MaxOutputTokens > 0 {
			v := t.MaxOutputTokens
			m.MaxOutputTokens = &v
		}
		data = append(data, m)
	}
	return mustJSON(map[string]any{"object": "list", "data": data})
}
