package backends

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Readiness is what the router knows about whether a tier's serve can take
// requests. Reasons are fixed tokens (safe to show on metadata endpoints).
type Readiness struct {
	Available     bool
	State         string // "ready" or "unavailable"
	Reason        string
	ExpectedModel string
	ObservedModel string
	Latency       time.Duration
	CheckedAt     time.Time
}

// Readiness reasons that are not derived from a status code.
const (
	ReasonNotConfigured     = "availability_not_configured"
	ReasonHealthPassed      = "health_passed"
	ReasonIdentityPassed    = "identity_passed"
	ReasonIdentityMismatch  = "identity_mismatch"
	ReasonIdentityMalformed = "identity_malformed"
	ReasonIdentityOversized = "identity_oversized"
	ReasonProbePending      = "probe_pending"
	ReasonRefused           = "connection_refused"
)

// prober keeps one tier's readiness: a cached probe result, refreshed at
// most once per interval, one probe at a time. Without health_path a tier
// has no prober and is always available.
type prober struct {
	healthURL string
	modelsURL string // identity check; "" when model_identity is off
	model     string
	// authHeader/authValue are the tier's own credentials, in its dialect's
	// header; anthropic adds anthropic-version to the identity check.
	authHeader string
	authValue  string
	anthropic  bool
	interval   time.Duration
	timeout    time.Duration
	maxBytes   int64
	client     *http.Client
	now        func() time.Time

	mu      sync.Mutex
	last    *Readiness
	pending chan struct{} // closed when the running probe finishes
}

func newProber(t *Tier, interval, timeout time.Duration, maxBytes int, client *http.Client) *prober {
	u, err := url.Parse(t.BaseURL)
	if err != nil {
		return nil
	}
	origin := u.Scheme + "://" + u.Host
	p := &prober{
		healthURL:  origin + t.HealthPath,
		model:      t.Model,
		authHeader: t.authHeader,
		authValue:  t.authValue,
		anthropic:  t.Dialect == "anthropic",
		interval:   interval,
		timeout:    timeout,
		maxBytes:   int64(maxBytes),
		client:     client,
		now:        time.Now,
	}
	if t.ModelIdentity {
		p.modelsURL = origin + "/v1/models"
	}
	return p
}

// check returns the tier's readiness: the cached result while it is fresh;
// otherwise this caller probes and the others meanwhile get the last result
// — or, if there has never been one, wait for this probe (bounded by the
// probe timeout) rather than fail.
func (p *prober) check() Readiness {
	p.mu.Lock()
	if p.last != nil && p.now().Sub(p.last.CheckedAt) < p.interval {
		r := *p.last
		p.mu.Unlock()
		return r
	}
	if p.pending != nil {
		if p.last != nil {
			r := *p.last
			p.mu.Unlock()
			return r
		}
		ch := p.pending
		p.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(2 * p.timeout):
			return Readiness{State: "unavailable", Reason: ReasonProbePending, ExpectedModel: p.model}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.last == nil {
			return Readiness{State: "unavailable", Reason: ReasonProbePending, ExpectedModel: p.model}
		}
		return *p.last
	}
	return p.refreshLocked()
}

// refresh probes now (unless a probe is already running, then it waits for
// that one) and returns the fresh result.
func (p *prober) refresh() Readiness {
	p.mu.Lock()
	if ch := p.pending; ch != nil {
		p.mu.Unlock()
		<-ch
		p.mu.Lock()
		defer p.mu.Unlock()
		return *p.last
	}
	return p.refreshLocked()
}

// refreshLocked runs a probe; p.mu is held on entry and released.
func (p *prober) refreshLocked() Readiness {
	ch := make(chan struct{})
	p.pending = ch
	p.mu.Unlock()
	r := p.probe()
	p.mu.Lock()
	p.last = &r
	p.pending = nil
	close(ch)
	p.mu.Unlock()
	return r
}

// markDown records a failure the relay saw (the serve refused a
// connection) so later requests are refused at once, without dialing,
// until the next probe says otherwise.
func (p *prober) markDown(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = &Readiness{State: "unavailable", Reason: reason, ExpectedModel: p.model, CheckedAt: p.now()}
}

// invalidate forgets the cached result (quiesce, readmit).
func (p *prober) invalidate() {
	p.mu.Lock()
	p.last = nil
	p.mu.Unlock()
}

// probe asks the serve: GET health_path (2xx/3xx passes; redirects are not
// followed), then, with model_identity, GET /v1/models and require the
// tier's model among the ids.
func (p *prober) probe() (r Readiness) {
	start := p.now()
	r = Readiness{State: "unavailable", ExpectedModel: p.model}
	// r is the named result so this stamp reaches the caller (and the
	// cache, whose freshness test reads CheckedAt).
	defer func() {
		r.Latency = p.now().Sub(start)
		r.CheckedAt = p.now()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	status, _, err := p.get(ctx, p.healthURL, false)
	if err != nil {
		r.Reason = "health_transport_" + probeErrToken(err)
		return r
	}
	if status < 200 || status > 399 {
		r.Reason = "health_http_" + strconv.Itoa(status)
		return r
	}
	if p.modelsURL == "" {
		r.Available, r.State, r.Reason = true, "ready", ReasonHealthPassed
		return r
	}
	status, body, err := p.get(ctx, p.modelsURL, true)
	switch {
	case errors.Is(err, errTooLarge):
		r.Reason = ReasonIdentityOversized
		return r
	case err != nil:
		r.Reason = "identity_transport_" + probeErrToken(err)
		return r
	case status < 200 || status > 299:
		r.Reason = "identity_http_" + strconv.Itoa(status)
		return r
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &list) != nil || list.Data == nil {
		r.Reason = ReasonIdentityMalformed
		return r
	}
	ids := make([]string, 0, len(list.Data))
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		r.ObservedModel = truncate(ids[0], 256)
	}
	if !slices.Contains(ids, p.model) {
		r.Reason = ReasonIdentityMismatch
		return r
	}
	r.ObservedModel = p.model
	r.Available, r.State, r.Reason = true, "ready", ReasonIdentityPassed
	return r
}

func (p *prober) get(ctx context.Context, url string, identity bool) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if identity {
		req.Header.Set("Accept", "application/json")
		// The tier key goes only to the identity check on the tier's
		// own origin (redirects are never followed).
		if p.authValue != "" {
			req.Header.Set(p.authHeader, p.authValue)
		}
		if p.anthropic {
			req.Header["Anthropic-Version"] = anthropicVersion
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if !identity {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, nil, nil
	}
	b, err := readAllLimit(resp.Body, resp.ContentLength, p.maxBytes)
	return resp.StatusCode, b, err
}

// probeErrToken names a transport failure with a safe token.
func probeErrToken(err error) string {
	switch r := transportReason(err); r {
	case "connection refused":
		return "refused"
	case "connection reset":
		return "reset"
	case "connect timeout":
		return "timeout"
	case "connection closed before response":
		return "closed"
	default:
		if errors.Is(err, context.DeadlineExceeded) {
			return "timeout"
		}
		return "error"
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
