// Package tsrouter is the router's front door: the tsnet node and the
// listeners, the HTTP handler they share, who the caller is (tailnet
// identity, router token, API keys), the route table (routes.go), the one
// inference pipeline (pipeline.go) with its caller dialects, and the one
// writer that turns every failure into a status (errors.go).
package tsrouter

import (
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
	"github.com/anvil-serving/anvil-router/tsrouter/usage"
	"github.com/anvil-serving/anvil-router/tsrouter/webui"
)

// Defaults of the process-level limits, as the Python router had them.
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
	// router token as the admin credential (sent as X-Admin-Token). It is
	// AdminAuth{Method: AdminBearerToken, Token: AdminToken}, used when
	// AdminAuth is not set.
	AdminToken policy.Token
	// AdminAuth is [admin.auth] (adminauth.go); the zero value keeps the
	// rule above.
	AdminAuth AdminAuth
	// CallerShare caps one caller's requests in flight — per tailnet node
	// and per API key — unless its grant or key sets max_concurrency
	// (default half of MaxConcurrency), so no one caller can starve the
	// others.
	CallerShare int
	// BodyGrace and MinBodyRate bound how slowly a caller may send a
	// request body: after BodyGrace (default 10 s) it must have kept
	// MinBodyRate bytes a second on average (default 64 KiB/s), or it
	// gets 408 and the connection is closed.
	BodyGrace   time.Duration
	MinBodyRate int64
	// WriteStall is how long a write to a caller that stopped reading
	// may block before the stream is cut as the caller's fault and the
	// serve's request cancelled (default 30 s).
	WriteStall time.Duration
	// ExhaustionRetryAfter is the Retry-After of the exhaustion status
	// when the serve sent none ([router].exhaustion_retry_after; default
	// DefaultExhaustionRetryAfter, negative = none). Long enough that
	// the SDKs do not wait for it: the caller should go elsewhere now.
	ExhaustionRetryAfter time.Duration
	// RefuseHostedTools answers a Responses request that declares a
	// hosted tool (web_search, file_search, …: tools that run on
	// OpenAI's side, which no serve can run) with 400 instead of dropping
	// the tool with an X-Anvil-Warning ([router].hosted_tools = "refuse";
	// default "drop").
	RefuseHostedTools bool
	// WebUIPrefix serves the browser interface (webui.go) there: [webui]
	// path_prefix when enabled; "" serves none.
	WebUIPrefix string
	// ConfigView is what GET /admin/config shows: the effective config
	// with secrets as variable names only (config.Config.View).
	ConfigView any
	// Guardrails is the [guardrails] engine (nil: off).
	Guardrails *guard.Engine
	// Usage configures usage accounting and budgets ([admin.stats]).
	Usage UsageOptions
}

// DefaultExhaustionRetryAfter is the default Retry-After of the
// exhaustion status. The openai and Anthropic SDKs wait for a Retry-After
// only under 60 s; agent harnesses with a fallback provider (OpenClaw) go
// to it at once when the wait is this long.
const DefaultExhaustionRetryAfter = 120 * time.Second

// Handler serves the router's HTTP API. Create it with New.
type Handler struct {
	mgmt        chan struct{}
	adminSlots  chan struct{}
	mutation    sync.Mutex
	backends    *backends.Set
	token       policy.Token
	log         *slog.Logger
	maxBody     int64
	slots       chan struct{}
	healthBody  []byte
	modelsBody  []byte
	version     string
	started     time.Time
	configHash  string
	decisions   *telemetry.Recorder
	metrics     *telemetry.Metrics
	limiter     *policy.RateLimiter
	keys        *KeyRing
	adminAuth   AdminAuth
	audioGW     *audioGateway
	inFlight    *policy.InFlight
	callerShare int
	bodyGrace   time.Duration
	minBodyRate int64
	writeStall  time.Duration
	// exhaustionRetryAfter is the Retry-After of the exhaustion status
	// when the serve sent none (seconds; "" none).
	exhaustionRetryAfter string
	// responsesOpts are the Responses translation's operator choices.
	responsesOpts dialect.ResponsesOptions
	// mux matches paths to the routes this config serves (served).
	mux    *http.ServeMux
	served []*route
	// tailnetName is the node's MagicDNS name, a Host browsers may use
	// (rebinding.go).
	tailnetName atomic.Pointer[string]
	// ui is the web UI (nil when [webui] is disabled); configView holds
	// GET /admin/config's view of the config in force (a *configView,
	// replaced after a SIGHUP reload).
	ui         *webui.UI
	configView atomic.Pointer[configView]
	// guard is the guardrails engine (nil or disabled: none); swapped
	// whole on reload.
	guard atomic.Pointer[guard.Engine]
	// usage counts requests by identity (nil: accounting is off).
	usage           *usage.Store
	noTokenTracking atomic.Bool
	// upstream routes the router's own calls to operator services (the
	// guardrail webhook and Presidio): tailnet hosts through the node.
	upstream          upstreamNet
	upstreamTransport *http.Transport
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
	h.adminAuth = opts.AdminAuth
	if h.adminAuth.Method == "" && opts.AdminToken.Enabled() {
		h.adminAuth = AdminAuth{Method: AdminBearerToken, Token: opts.AdminToken}
	}
	if opts.RefuseHostedTools {
		h.responsesOpts.Hosted = dialect.HostedRefuse
	}
	h.guard.Store(opts.Guardrails)
	switch ra := opts.ExhaustionRetryAfter; {
	case ra == 0:
		h.exhaustionRetryAfter = itoa(int(DefaultExhaustionRetryAfter / time.Second))
	case ra > 0:
		h.exhaustionRetryAfter = itoa(int((ra + time.Second - 1) / time.Second))
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	h.bodyGrace, h.minBodyRate, h.writeStall = cmp.Or(opts.BodyGrace, DefaultBodyGrace), cmp.Or(opts.MinBodyRate, DefaultMinBodyRate), cmp.Or(opts.WriteStall, DefaultWriteStall)
	n := opts.MaxConcurrency
	if n <= 0 {
		n = DefaultMaxConcurrency
	}
	h.slots = make(chan struct{}, n)
	h.inFlight = policy.NewInFlight()
	h.callerShare = opts.CallerShare
	if h.callerShare <= 0 {
		h.callerShare = max(n/2, 1)
	}
	h.mgmt = make(chan struct{}, managementSlots)
	h.adminSlots = make(chan struct{}, adminSlots)
	if !opts.Usage.Disabled {
		h.usage = opts.Usage.Store
		if h.usage == nil {
			h.usage = NewUsageStore(opts.Backends, 0, opts.Usage.Now)
		}
		h.noTokenTracking.Store(opts.Usage.NoTokenTracking)
	}
	h.audioGW = newAudioGateway(opts.Backends, h.maxBody, h.token.Enabled(), h.log)
	h.initWebUI(opts.WebUIPrefix)
	h.SetConfigView(opts.ConfigView)
	h.upstreamTransport = h.upstream.transport()
	h.buildMux()
	h.healthBody = mustJSON(map[string]any{
		"status":   "ok",
		"dialects": []string{"anthropic", "openai", "responses"},
		"routes":   h.advertisedPaths(),
	})
	h.modelsBody = modelsJSON(opts.Backends, nil)
	return h
}

// ServeHTTP serves the dev listener: loopback only, no tailnet identity,
// every model allowed, the router token required when configured.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, doorDev, nil)
}

// serve handles one request that came through door d (tn is the tailnet
// door's identity source, nil elsewhere). Liveness is answered first and
// never gated; everything else is matched against the route table and
// goes through dispatch.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, d door, tn *tailnetDoor) {
	rw := &recorder{ResponseWriter: w, tailnet: tn}
	rw.rec.start = time.Now()
	rw.rec.door = d
	defer h.audit(rw, r)
	w.Header().Set("Server", "anvil")
	p := routedPath(r.URL.Path)
	if p == "/healthz" && isGet(r.Method) {
		rw.rec.quiet = true
		writeJSON(rw, http.StatusOK, h.healthBody)
		return
	}
	if p == "" {
		h.dispatch(rw, r, noRoute)
		return
	}
	if p != r.URL.Path {
		r2 := *r
		u := *r.URL
		u.Path, u.RawPath = p, ""
		r2.URL = &u
		r = &r2
	}
	h.mux.ServeHTTP(rw, r)
}

// endpoint is the mux's handler for rt.
func (h *Handler) endpoint(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.dispatch(w.(*recorder), r, rt)
	})
}

// dispatch runs the front door for rt, then its handler. The order matters:
// who the caller is (the door, tailnet identity — fail closed), the router
// token and API keys, rate limits — all before any route answers, so an
// unknown path is never a 404 to an unauthenticated caller (its key class
// and envelope come from the table: a public path such as /metrics is
// told apart from an unknown one only by being public); then admin
// rights, the method, the body (read before the slot, so a slow sender
// holds none), and the slot. Every refusal is an error for fail.
func (h *Handler) dispatch(w *recorder, r *http.Request, rt *route) {
	rec := &w.rec
	// Every response carries the request id the decision log keys on: the
	// caller's own when it sent a usable one, else a generated one.
	rec.requestID, rec.workbenchRunID, rec.taskID, _ = telemetry.Correlation(r.Header)
	w.Header()[telemetry.HeaderRequestID] = []string{rec.requestID}
	if rt.env == envAnthropic {
		// Anthropic's SDKs read the id from request-id (message._request_id,
		// APIError.requestID), not from X-Request-Id.
		w.Header()[telemetry.HeaderRequestIDLegacy] = []string{rec.requestID}
	}
	if len(r.TransferEncoding) > 0 {
		// A chunked body may have come with a Content-Length too, which
		// net/http drops without a trace: close the connection after the
		// answer — refusals included — so nothing after the body is read
		// as another request.
		w.Header().Set("Connection", "close")
	}
	if rec.door == doorLocal {
		// Without local_api the loopback listener is a health endpoint only.
		h.fail(w, envGeneric, errNoRoute)
		return
	}
	if err := h.admitCaller(w, r, rt); err != nil {
		// Read a small refused body, so the keep-alive connection stays
		// usable; a large one is left and the server closes the connection.
		drainSmallBody(w, r)
		h.fail(w, rt.env, err)
		return
	}
	if rt == noRoute {
		h.fail(w, envGeneric, errNoRoute)
		return
	}
	// DNS rebinding (rebinding.go): a request that no secret authenticated,
	// or a browser's on the admin API or the UI, must name this router.
	if (!rec.secretAuth || (rt.admin || rt.ui) && fromBrowser(r)) && !h.hostTrusted(r) {
		h.fail(w, rt.env, errCrossSite.withDetail("request for an untrusted Host (DNS rebinding?)"))
		return
	}
	if rt.admin {
		if err := h.admitAdmin(r, rec); err != nil {
			h.fail(w, rt.env, err)
			return
		}
	}
	serve, ok := rt.handler(r.Method)
	if !ok {
		h.fail(w, rt.env, errMethod(rt.allow()))
		return
	}
	metered := rt.metered && h.usageOn()
	if metered {
		defer h.recordUsage(w, rec)
	}
	if rt.body != nil && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
		body, err := rt.body(h, w, r)
		if err != nil {
			h.fail(w, rt.env, err)
			if errors.Is(err, errTooLarge) || errors.Is(err, errAudioBodyTooLarge) {
				linger(w, r)
			}
			return
		}
		w.body = body
	}
	if err := h.checkBrowserWrite(r, rec, rt, w.body); err != nil {
		h.fail(w, rt.env, err)
		return
	}
	// A caller refused for its guardrail names spends no budget.
	if rt.metered {
		if err := h.checkGuardrailNames(rec); err != nil {
			h.fail(w, rt.env, err)
			return
		}
	}
	if metered {
		if err := h.checkBudget(rec); err != nil {
			h.fail(w, rt.env, err)
			return
		}
	}
	release, err := h.takeSlot(rt.pool)
	if err != nil {
		h.fail(w, rt.env, err)
		return
	}
	defer release()
	if rt.pool == poolData {
		caps := rec.principal.InFlightCaps(h.callerShare)
		done, ok := h.inFlight.Acquire(caps[:])
		if !ok {
			h.fail(w, rt.env, errCallerBusy)
			return
		}
		defer done()
	}
	if rt.noStore {
		w.Header().Set("Cache-Control", "no-store")
	}
	if err := serve(h, w, r, rec); err != nil {
		h.fail(w, rt.env, err)
	}
}

// admitCaller decides who the caller is: the tailnet identity and its
// grants (the door), then the router token and API keys, then the rate
// limits of the caller's grant and key — enforced, not just parsed.
func (h *Handler) admitCaller(w *recorder, r *http.Request, rt *route) error {
	rec := &w.rec
	switch rec.door {
	case doorTailnet:
		p, err := w.tailnet.principal(r)
		if err != nil {
			return errForbidden.withDetail(err.Error())
		}
		rec.principal = p
	default:
		rec.principal = unrestricted
	}
	if err := h.uiAdmit(r, rec, rt, h.admitCredentials(r, rec, rt.class)); err != nil {
		return err
	}
	if lims := rec.principal.Limits(); lims[0].PerMinute > 0 || lims[1].PerMinute > 0 {
		if ok, wait := h.limiter.AllowAll(lims[:], time.Now()); !ok {
			return errRateLimited(policy.RetryAfterSeconds(wait)).withDetail("rate limited")
		}
	}
	return nil
}

// takeSlot takes a slot of pool p, or refuses at once: nothing queues in
// front of the router.
func (h *Handler) takeSlot(p pool) (release func(), _ error) {
	slots, busy := h.slots, errBusy
	switch p {
	case poolManagement:
		slots, busy = h.mgmt, errMgmtBusy
	case poolAdmin:
		slots, busy = h.adminSlots, errMgmtBusy
	}
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	default:
		return nil, busy
	}
}

// health serves /healthz (for methods the liveness fast path does not
// take) and /health.
func (h *Handler) health(w *recorder, r *http.Request, rec *record) error {
	writeJSON(w, http.StatusOK, h.healthBody)
	return nil
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

// drainSmallBody reads a refused request's body when it is small (64 KiB at
// most) and arrives within a second; anything else is left, and the server
// closes the connection. A refused caller cannot hold a goroutine by
// trickling.
func drainSmallBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.ContentLength <= 0 || r.ContentLength > 64<<10 {
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.Copy(io.Discard, io.LimitReader(r.Body, r.ContentLength)); err == nil {
		rc.SetReadDeadline(time.Time{})
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	writeBody(w, status, "application/json", body)
}

// writeBody writes a whole response body.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
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
