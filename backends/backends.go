// Package backends is the serve side of the router: it turns its Config
// (built by the caller from the router file) into routable tiers, prepares upstream request bodies (model
// rewrite, operator overrides, output caps), talks to the loopback serves
// over a shared connection pool, and relays their responses — streams event
// by event — while classifying every upstream failure so the front door can
// answer with the right status.
package backends

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// Set is the routable view of a config: tiers by id and aliases by
// normalized name. It is immutable after New and safe for concurrent use.
type Set struct {
	tiers   []*Tier
	byAlias map[string]*Tier
	routes  []Route
	// ExhaustionStatus is the status for "the routed serve cannot take this
	// request now" (the client's failover signal).
	ExhaustionStatus int
	client           *http.Client
	probeInterval    time.Duration
	probeBackground  bool
	purposes         []*Purpose
	audio            []*AudioRoute
	audioLimits      AudioLimits
}

// Tier is one chat serve, ready to receive requests.
type Tier struct {
	TierConfig
	// Aliases that route here, in config order.
	Aliases []string

	chatURL string
	// authHeader carries authValue: "Authorization" with "Bearer <key>"
	// for an OpenAI serve, "X-Api-Key" with the bare key for an Anthropic
	// one. authValue is "" without a key and never logged.
	authHeader string
	authValue  string
	timeout    time.Duration
	// Pre-encoded operator overrides, applied to every body.
	extraBody         []member
	extraBodyDefaults []member
	modelJSON         []byte // Tier.Model as a JSON string, nil if unset
	client            *http.Client
	// prober keeps readiness when health_path is set (nil otherwise).
	prober *prober
	// adm is the quiesce state, active count and concurrency cap.
	adm *admission
}

type member struct {
	key string
	raw []byte
}

// Options tunes the upstream transport.
type Options struct {
	// LookupEnv reads a serve's auth_env value (default: the process
	// environment). A missing value means no upstream auth header.
	LookupEnv func(string) string
	// MaxIdleConnsPerHost bounds pooled keep-alive connections per serve.
	MaxIdleConnsPerHost int
	// Logger receives start-up warnings (skipped purpose models).
	Logger *slog.Logger
}

// New builds the routable set from a validated config.
func New(cfg Config, opts Options) (*Set, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.Getenv
	}
	if opts.MaxIdleConnsPerHost == 0 {
		opts.MaxIdleConnsPerHost = 1024
	}
	s := &Set{
		byAlias:          make(map[string]*Tier, len(cfg.Routes)),
		routes:           cfg.Routes,
		ExhaustionStatus: cfg.ExhaustionStatus,
		client:           &http.Client{Transport: newH1Transport(opts.MaxIdleConnsPerHost, newTransport(opts.MaxIdleConnsPerHost)), CheckRedirect: noRedirects},
	}
	s.probeInterval = cfg.AvailabilityProbeInterval
	s.probeBackground = cfg.ProbeInBackground
	// Probes get their own client: short-lived, never proxied, never
	// redirected, so the tier key stays on the tier's own origin.
	probeClient := &http.Client{Transport: newTransport(4), CheckRedirect: noRedirects}
	byID := map[string]*Tier{}
	for _, tc := range cfg.Tiers {
		t, err := newTier(tc, cfg.RelayTimeout, opts.LookupEnv, s.client)
		if err != nil {
			return nil, fmt.Errorf("tier %q: %w", tc.ID, err)
		}
		maxQueue := tc.MaxQueue
		if maxQueue == 0 {
			maxQueue = DefaultMaxQueue
		}
		queueTimeout := cfg.QueueTimeout
		if queueTimeout <= 0 {
			queueTimeout = DefaultQueueTimeout
		}
		t.adm = newAdmission(tc.MaxConcurrency, maxQueue, queueTimeout)
		if tc.HealthPath != "" {
			t.prober = newProber(t, cfg.AvailabilityProbeInterval, cfg.AvailabilityProbeTimeout, cfg.AvailabilityProbeMaxBytes, probeClient)
		}
		s.tiers = append(s.tiers, t)
		byID[t.ID] = t
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s.newPurposes(cfg, opts.LookupEnv, opts.Logger)
	s.newAudioRoutes(cfg, opts.LookupEnv, opts.Logger)
	for _, r := range cfg.Routes {
		t := byID[r.TierID]
		if t == nil {
			return nil, fmt.Errorf("alias %q: unknown tier %q", r.Alias, r.TierID)
		}
		t.Aliases = append(t.Aliases, r.Alias)
		s.byAlias[r.Alias] = t
	}
	return s, nil
}

// newTransport is net/http's transport set up for the serves: keep-alive
// pooling sized for many concurrent streams, no proxies (the serves are on
// loopback and a proxy would see bearer tokens), no transparent gzip (bytes
// pass through as the serve sent them). Plain-http serves go through
// h1Transport in front of it; this one carries https serves and probes.
func newTransport(maxIdlePerHost int) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxIdlePerHost * 4,
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ExpectContinueTimeout: 0,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func newTier(tc TierConfig, relayTimeout time.Duration, lookup func(string) string, client *http.Client) (*Tier, error) {
	t := &Tier{TierConfig: tc, client: client, timeout: relayTimeout}
	if tc.Timeout > 0 {
		t.timeout = tc.Timeout
	}
	if t.timeout <= 0 {
		t.timeout = 20 * time.Second
	}
	base := strings.TrimRight(tc.BaseURL, "/")
	switch tc.Dialect {
	case "openai":
		if !strings.HasSuffix(base, "/v1") {
			base += "/v1"
		}
		t.chatURL = base + "/chat/completions"
	case "anthropic":
		t.chatURL = base + "/v1/messages"
	default:
		return nil, fmt.Errorf("unsupported dialect %q", tc.Dialect)
	}
	t.authHeader = "Authorization"
	if tc.Dialect == "anthropic" {
		t.authHeader = "X-Api-Key"
	}
	if tc.AuthEnv != "" {
		if v := strings.TrimSpace(lookup(tc.AuthEnv)); v != "" {
			t.authValue = v
			if tc.Dialect == "openai" {
				t.authValue = "Bearer " + v
			}
		}
	}
	if tc.Model != "" {
		t.modelJSON, _ = json.Marshal(tc.Model)
	}
	var err error
	if t.extraBody, err = encodeMembers(tc.ExtraBody); err != nil {
		return nil, fmt.Errorf("extra_body: %w", err)
	}
	if t.extraBodyDefaults, err = encodeMembers(tc.ExtraBodyDefaults); err != nil {
		return nil, fmt.Errorf("extra_body_defaults: %w", err)
	}
	return t, nil
}

// encodeMembers pre-encodes an operator table once, in sorted key order so
// the upstream body is deterministic.
func encodeMembers(m map[string]any) ([]member, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]member, 0, len(keys))
	for _, k := range keys {
		raw, err := json.Marshal(m[k])
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out = append(out, member{k, raw})
	}
	return out, nil
}

// Lookup returns the tier serving alias, which the caller has normalized
// with NormalizeAlias.
func (s *Set) Lookup(alias string) (*Tier, bool) {
	t, ok := s.byAlias[alias]
	return t, ok
}

// Routes returns the aliases in config order.
func (s *Set) Routes() []Route { return s.routes }

// Tiers returns the tiers in config order.
func (s *Set) Tiers() []*Tier { return s.tiers }

// NormalizeAlias is the alias key rule shared with the config: trimmed and
// lowercased.
func NormalizeAlias(model string) string {
	return strings.ToLower(strings.TrimSpace(model))
}

// Start runs the background prober, if configured, until ctx ends: every
// probed tier is re-checked each availability_probe_interval, so requests
// find a fresh result instead of paying for a probe after an outage.
func (s *Set) Start(ctx context.Context) {
	if !s.probeBackground {
		return
	}
	for _, t := range s.tiers {
		if t.prober == nil {
			continue
		}
		go func() {
			tick := time.NewTicker(s.probeInterval)
			defer tick.Stop()
			for {
				t.prober.refresh()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
}

// Tier returns the tier with id.
func (s *Set) Tier(id string) (*Tier, bool) {
	for _, t := range s.tiers {
		if t.ID == id {
			return t, true
		}
	}
	return nil, false
}

// OnAdmissionChange registers fn to run after every effective quiesce or
// readmit of any tier (to persist intent).
func (s *Set) OnAdmissionChange(fn func()) {
	for _, t := range s.tiers {
		t.adm.onChange = fn
	}
}

// CloseIdle closes pooled upstream connections (on shutdown).
func (s *Set) CloseIdle() {
	s.client.CloseIdleConnections()
	s.closeIdleAudio()
}

// Timeout is the tier's relay timeout: connect, time to headers, and every
// gap between upstream reads.
func (t *Tier) Timeout() time.Duration { return t.timeout }
