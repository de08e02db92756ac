// Package config reads and validates the router's TOML file: the
// anvil-serving router format ([server], [router], [[router.tiers]],
// [router.model_routes], [[router.purpose_models]], [[router.audio_routes]])
// plus the tables this router adds. It does no network I/O and never reads a
// secret's value except through ResolveSecret.
package config

import "time"

// Config is one validated router file.
type Config struct {
	// Path is the file the config was read from ("" for embedded configs).
	Path string
	// Server holds [server]: front-door settings.
	Server Server
	// Router holds [router]: tiers, aliases and relay settings.
	Router Router
	// Tailnet holds [tailnet]: the node and who may call it. Defaults
	// apply when the table is absent.
	Tailnet Tailnet
	// APIKeys holds [api_keys]; Admin holds [admin].
	APIKeys APIKeys
	Admin   Admin
	// ACP holds [acp]: the `anvil-router acp` coding agent (acp.go).
	ACP ACP
	// WebUI holds [webui]: the browser interface (webui.go).
	WebUI WebUI
	// Guardrails holds [guardrails]: checks on the text of requests and
	// answers (guardrails.go, tsrouter/guard).
	Guardrails Guardrails
}

// Server is the [server] table. Unknown keys are rejected.
type Server struct {
	// AuthEnv names the environment variable that holds the router token
	// (ADR-0004). Empty means token auth is off.
	AuthEnv string
	// AdmissionStatePath is where quiesce intent is persisted (optional).
	AdmissionStatePath string
	// DecisionLogPath is the JSONL decision sink (optional).
	DecisionLogPath string
	// LocalListen is an optional loopback address (127.0.0.1:PORT) for the
	// container health check and on-host tools.
	LocalListen string
	// LocalAPI serves the whole API on LocalListen, not just /healthz;
	// every request there then needs the router token.
	LocalAPI bool
}

// Router is the [router] table. Unknown keys are rejected.
type Router struct {
	// Tiers are the chat serves, in config order.
	Tiers []Tier
	// Routes maps normalized aliases to tier ids, in config order (which is
	// the order of /v1/models).
	Routes []Route
	// ExhaustionStatus is the HTTP status returned when the routed tier
	// cannot take a request (default 503).
	ExhaustionStatus int
	// ExhaustionRetryAfter is the Retry-After sent with it when the serve
	// sent none (default 120 s: long enough that the SDKs do not wait,
	// so a client with its own provider goes there now).
	ExhaustionRetryAfter time.Duration
	// RefuseHostedTools is hosted_tools = "refuse": a Responses request
	// declaring a hosted tool (web_search, …) gets 400 instead of the
	// tool being dropped with a warning (default "drop").
	RefuseHostedTools bool
	// RelayTimeout bounds connect, time to response headers and every gap
	// between upstream reads, unless a tier sets its own Timeout (default 20s).
	RelayTimeout time.Duration
	// AvailabilityProbeInterval is the readiness cache TTL (default 5s).
	AvailabilityProbeInterval time.Duration
	// AvailabilityProbeTimeout bounds one readiness probe (default 1s).
	AvailabilityProbeTimeout time.Duration
	// AvailabilityProbeMaxBytes caps the identity /v1/models body (default 65536).
	AvailabilityProbeMaxBytes int
	// ProbeInBackground keeps every probed tier's readiness fresh on a
	// timer, so no request pays for a probe (default true; the Python
	// router probed only on demand).
	ProbeInBackground bool
	// QueueTimeout bounds how long a request waits for a tier's
	// max_concurrency slot before it gets the exhaustion status
	// (default 30s).
	QueueTimeout time.Duration
	// PurposeModels are the embedding and rerank serves.
	PurposeModels []PurposeModel
	// AudioRoutes are the speech-to-text and text-to-speech serves.
	AudioRoutes []AudioRoute
	// Audio caps (defaults 4 MiB, 4 MiB, 16384 chars, 4 slots).
	AudioMaxInputBytes  int
	AudioMaxOutputBytes int
	AudioMaxTextChars   int
	AudioMaxConcurrency int
}

// Route is one [router.model_routes] entry.
type Route struct {
	// Alias is trimmed and lowercased; dotted TOML keys are flattened.
	Alias string
	// TierID is the id of the tier that serves the alias.
	TierID string
}

// Tier is one [[router.tiers]] entry: a model serve on loopback.
type Tier struct {
	ID           string
	BaseURL      string // http:// or https://, path allowed
	Dialect      string // "openai" or "anthropic": the serve's wire format
	ContextLimit int    // tokens; advertised as context_window
	Privacy      string // always "local"
	ToolSupport  bool   // false: requests carrying tools are refused
	// AuthEnv names the env var holding the serve's bearer token. Required
	// by the file format; an unset variable means no upstream auth header.
	AuthEnv string
	// Model is the served model id sent upstream instead of the alias
	// ("" = not set: derived from the serve, an empty string in the file
	// counts as not set).
	Model string
	// ExtraBody is merged into every upstream body last (hard override).
	ExtraBody map[string]any
	// ExtraBodyDefaults is set-if-absent before ExtraBody (soft default).
	ExtraBodyDefaults map[string]any
	Engine            string
	Quantization      string
	// Params is free-form metadata never sent upstream (params.capacity,
	// params.capabilities, params.fingerprint).
	Params map[string]any
	// Timeout overrides Router.RelayTimeout for this tier (0 = inherit).
	Timeout time.Duration
	// MaxConcurrency caps in-flight requests to this tier (0 = no cap).
	MaxConcurrency int
	// MaxQueue bounds how many requests may wait for a slot when
	// MaxConcurrency is reached (0 = DefaultMaxQueue); past it requests get
	// the exhaustion status at once.
	MaxQueue int
	// MaxOutputTokens is the completion ceiling (0 = none).
	MaxOutputTokens int
	// HealthPath enables readiness probing ("" = always available).
	HealthPath string
	// ModelIdentity adds an exact-id check against the serve's /v1/models.
	ModelIdentity bool
}

// PurposeModel is one [[router.purpose_models]] entry (embeddings, rerank).
type PurposeModel struct {
	ID      string
	Kind    string // "embedding" or "rerank"
	Model   string // routing key and upstream served name
	BaseURL string
	AuthEnv string // optional
	// Timeout overrides Router.RelayTimeout (0 = inherit).
	Timeout time.Duration
}

// AudioRoute is one [[router.audio_routes]] entry.
type AudioRoute struct {
	ID               string
	Purpose          string // "stt" or "tts"
	Model            string
	BaseURL          string
	SourceSampleRate int // required for tts, forbidden for stt
	// Timeout overrides Router.RelayTimeout (0 = inherit).
	Timeout time.Duration
	AuthEnv string // optional
	// Default marks the route used when a request names no model. Parse
	// sets it on the only route of a purpose, so callers need not infer it.
	Default bool
}
