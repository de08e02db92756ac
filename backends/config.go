package backends

import "time"

// Config is everything New needs to build the routable set. The backends
// package does not read the router file: cmd/anvil-router (and the demo,
// the benchmark's child router, tests) fill this from the parsed file, so
// the serve side depends on no front-door package.
type Config struct {
	// Tiers are the chat serves, in config order.
	Tiers []TierConfig
	// Routes map normalized aliases to tier ids, in config order (the
	// order of /v1/models).
	Routes []Route
	// ExhaustionStatus is the status for "the routed serve cannot take
	// this request now".
	ExhaustionStatus int
	// RelayTimeout bounds connect, time to response headers and every gap
	// between upstream reads unless a serve sets its own (0: 20 s).
	RelayTimeout time.Duration
	// AvailabilityProbeInterval is how long a readiness result is cached
	// (and the background prober's period).
	AvailabilityProbeInterval time.Duration
	// AvailabilityProbeTimeout bounds one readiness probe.
	AvailabilityProbeTimeout time.Duration
	// AvailabilityProbeMaxBytes caps the /v1/models body of an identity probe.
	AvailabilityProbeMaxBytes int
	// ProbeInBackground keeps every probed tier's readiness fresh on a timer.
	ProbeInBackground bool
	// QueueTimeout bounds how long a request waits for a tier's
	// concurrency slot (0: DefaultQueueTimeout).
	QueueTimeout time.Duration
	// PurposeModels are the embedding and rerank serves.
	PurposeModels []PurposeConfig
	// AudioRoutes are the speech-to-text and text-to-speech serves.
	AudioRoutes []AudioRouteConfig
	// Audio holds the audio caps (0: the Default* values).
	Audio AudioLimits
}

// Defaults of the values above that a Config may leave zero.
const (
	DefaultMaxQueue            = 256
	DefaultQueueTimeout        = 30 * time.Second
	DefaultAudioMaxInputBytes  = 4 << 20
	DefaultAudioMaxOutputBytes = 4 << 20
	DefaultAudioMaxTextChars   = 16384
	DefaultAudioMaxConcurrency = 4
)

// Route is one alias and the tier that serves it.
type Route struct {
	// Alias is trimmed and lowercased (see NormalizeAlias).
	Alias string
	// TierID is the id of the tier that serves the alias.
	TierID string
}

// TierConfig is one chat serve as configured.
type TierConfig struct {
	ID           string
	BaseURL      string // http:// or https://, path allowed
	Dialect      string // "openai" or "anthropic": the serve's wire format
	ContextLimit int    // tokens; advertised as context_window
	Privacy      string // always "local"
	ToolSupport  bool   // false: requests carrying tools are refused
	// AuthEnv names the variable holding the serve's key; unset or empty
	// means no upstream auth header.
	AuthEnv string
	// Model is the served model id sent upstream instead of the alias
	// ("": not set, derived from the serve).
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
	// Timeout overrides Config.RelayTimeout for this tier (0: inherit).
	Timeout time.Duration
	// MaxConcurrency caps in-flight requests to this tier (0: no cap).
	MaxConcurrency int
	// MaxQueue bounds how many requests may wait for a slot when
	// MaxConcurrency is reached (0: DefaultMaxQueue); past it requests get
	// the exhaustion status at once.
	MaxQueue int
	// MaxOutputTokens is the completion ceiling (0: none).
	MaxOutputTokens int
	// HealthPath enables readiness probing ("": always available).
	HealthPath string
	// ModelIdentity adds an exact-id check against the serve's /v1/models.
	ModelIdentity bool
}

// PurposeConfig is one embedding or rerank serve as configured.
type PurposeConfig struct {
	ID      string
	Kind    string // "embedding" or "rerank"
	Model   string // routing key and upstream served name
	BaseURL string
	AuthEnv string // optional
	// Timeout overrides Config.RelayTimeout (0: inherit).
	Timeout time.Duration
}

// AudioRouteConfig is one speech-to-text or text-to-speech serve as
// configured.
type AudioRouteConfig struct {
	ID               string
	Purpose          string // "stt" or "tts"
	Model            string
	BaseURL          string
	SourceSampleRate int // the PCM rate of a tts serve's output
	// Timeout overrides Config.RelayTimeout (0: inherit).
	Timeout time.Duration
	AuthEnv string // optional
	// Default marks the route used when a request names no model.
	Default bool
}
