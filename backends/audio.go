package backends

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AudioRoute is a speech-to-text or text-to-speech serve
// ([[router.audio_routes]]). Each route has its own HTTP client: audio
// requests carry caller media and the route's bearer token, so they share
// no connection pool with other serves, never use a proxy and never
// follow a redirect (the token stays on the configured origin).
type AudioRoute struct {
	AudioRouteConfig

	baseURL   string // base_url without its trailing "/"
	authValue string // "Bearer <token>" or "" — never logged
	timeout   time.Duration
	client    *http.Client
	prober    *prober
}

// AudioLimits are the [router] audio caps.
type AudioLimits struct {
	// MaxInputBytes caps decoded STT audio.
	MaxInputBytes int
	// MaxOutputBytes caps an upstream audio reply.
	MaxOutputBytes int
	// MaxTextChars caps TTS input, in characters (code points).
	MaxTextChars int
	// MaxConcurrency is the size of the audio-only slot pool.
	MaxConcurrency int
}

// AudioFailure says how an audio upstream exchange failed.
type AudioFailure int

const (
	// AudioTimedOut: the route's total deadline passed (504).
	AudioTimedOut AudioFailure = iota + 1
	// AudioTransport: no usable answer (refused, reset, unreachable).
	AudioTransport
	// AudioStatus: the serve answered with a non-2xx status, redirects
	// included (they are never followed).
	AudioStatus
	// AudioOversized: the reply was larger than the caller's cap.
	AudioOversized
)

// AudioError is a classified audio upstream failure. Detail is for the
// operator's log: it never holds the request or reply body (audio,
// transcripts or text) nor a secret.
type AudioError struct {
	Failure AudioFailure
	Status  int // the upstream status for AudioStatus
	Detail  string
}

func (e *AudioError) Error() string { return e.Detail }

// AudioReply is a 2xx audio upstream answer.
type AudioReply struct {
	ContentType string
	Body        []byte
}

// errAudioDeadline is the cancellation cause of the route's total deadline,
// told apart from the caller going away.
var errAudioDeadline = errors.New("audio route deadline")

// newAudioRoutes builds the audio serves. As for purpose models, an entry
// whose auth_env is set but unresolvable is skipped with a warning.
func (s *Set) newAudioRoutes(r Config, lookup func(string) string, log *slog.Logger) {
	s.audioLimits = r.Audio
	for _, ar := range r.AudioRoutes {
		auth := ""
		if ar.AuthEnv != "" {
			v := strings.TrimSpace(lookup(ar.AuthEnv))
			if v == "" {
				log.Warn("audio route skipped: its auth_env is not set", "id", ar.ID, "auth_env", ar.AuthEnv)
				continue
			}
			auth = "Bearer " + v
		}
		timeout := ar.Timeout
		if timeout <= 0 {
			timeout = r.RelayTimeout
		}
		if timeout <= 0 {
			timeout = 20 * time.Second
		}
		client := &http.Client{Transport: newTransport(4), CheckRedirect: noRedirects}
		a := &AudioRoute{AudioRouteConfig: ar, baseURL: strings.TrimRight(ar.BaseURL, "/"), authValue: auth, timeout: timeout, client: client}
		a.prober = newServiceProber(ar.BaseURL, ar.Model, r.AvailabilityProbeInterval, r.AvailabilityProbeTimeout, client)
		s.audio = append(s.audio, a)
	}
}

// newServiceProber watches a purpose model or audio route the way the
// readiness table needs: an unauthenticated GET of the origin's
// /v1/models (2xx/3xx passes), cached for interval like a tier's probe.
func newServiceProber(baseURL, model string, interval, timeout time.Duration, client *http.Client) *prober {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return nil
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	return &prober{
		healthURL: u.Scheme + "://" + u.Host + "/v1/models",
		model:     model,
		interval:  interval,
		timeout:   timeout,
		client:    client,
		now:       time.Now,
	}
}

// AudioRoutes returns the bound audio routes (those whose auth_env, if
// any, resolved) in config order.
func (s *Set) AudioRoutes() []*AudioRoute { return s.audio }

// AudioLimits returns the [router] audio caps.
func (s *Set) AudioLimits() AudioLimits { return s.audioLimits }

// Timeout is the route's total wall-clock deadline per request.
func (a *AudioRoute) Timeout() time.Duration { return a.timeout }

// Readiness probes (through the cache) whether the route's serve answers.
func (a *AudioRoute) Readiness() Readiness {
	if a.prober == nil {
		return Readiness{Available: true, State: "ready", Reason: ReasonNotConfigured, ExpectedModel: a.Model}
	}
	return a.prober.check()
}

// Post sends body to base_url+path and returns the 2xx reply, read in
// full up to maxBytes. The whole exchange — connect, upload, headers and
// the reply body — runs under the route's total deadline. ctx is the
// caller's: when it ends first the result is ErrClientGone.
func (a *AudioRoute) Post(ctx context.Context, path, contentType, accept string, body []byte, maxBytes int64) (*AudioReply, error) {
	dctx, cancel := context.WithTimeoutCause(ctx, a.timeout, errAudioDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(dctx, http.MethodPost, a.baseURL+path, bytes.NewReader(body))
	if err != nil {
		return nil, &AudioError{Failure: AudioTransport, Detail: "building the audio request failed"}
	}
	req.Header = http.Header{"Content-Type": {contentType}, "Accept": {accept}}
	if a.authValue != "" {
		req.Header["Authorization"] = []string{a.authValue}
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, a.classify(ctx, dctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The body may echo the caller's text or transcript: it is
		// neither read into the log nor shown to the caller.
		return nil, &AudioError{Failure: AudioStatus, Status: resp.StatusCode, Detail: "audio serve answered HTTP " + strconv.Itoa(resp.StatusCode)}
	}
	if resp.ContentLength > maxBytes {
		return nil, &AudioError{Failure: AudioOversized, Detail: "audio reply of " + strconv.FormatInt(resp.ContentLength, 10) + " bytes is over the cap"}
	}
	b, err := readAllLimit(resp.Body, resp.ContentLength, maxBytes)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, &AudioError{Failure: AudioOversized, Detail: "audio reply is over the cap"}
	case err != nil:
		return nil, a.classify(ctx, dctx, err)
	}
	return &AudioReply{ContentType: resp.Header.Get("Content-Type"), Body: b}, nil
}

// classify names a failure that left no usable reply.
func (a *AudioRoute) classify(caller, deadline context.Context, err error) error {
	switch {
	case caller.Err() != nil:
		return ErrClientGone
	case errors.Is(context.Cause(deadline), errAudioDeadline):
		return &AudioError{Failure: AudioTimedOut, Detail: "no complete audio reply within " + a.timeout.String()}
	default:
		return &AudioError{Failure: AudioTransport, Detail: "audio serve: " + transportReason(err)}
	}
}

// closeIdleAudio drops the audio clients' pooled connections.
func (s *Set) closeIdleAudio() {
	for _, a := range s.audio {
		a.client.CloseIdleConnections()
	}
}
