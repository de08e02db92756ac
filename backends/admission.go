package backends

import (
	"context"
	"errors"
	"regexp"
	"sync"
	"time"
)

// Admission states of a tier.
const (
	StateAdmitting = "admitting"
	StateQuiesced  = "quiesced"
)

// Errors of the transition operations; the admin API maps them to 400.
var (
	ErrDraining     = errors.New("tier is draining")
	ErrNotQuiesced  = errors.New("tier must be quiesced first")
	ErrBadReason    = errors.New("reason must be 1-128 characters of letters, digits, '-', '_' or '.'")
	ErrBadTimeout   = errors.New("timeout must be a finite number of seconds > 0")
	reasonPattern   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)
	errQueueFull    = withReason(unavailable("tier queue full"), "queue_full")
	errQueueTimeout = withReason(unavailable("queue timeout waiting for a tier slot"), "queue_timeout")
	errQuiesced     = withReason(unavailable("tier quiesced"), "quiesced")
)

func withReason(e *Error, reason string) *Error {
	e.Reason = reason
	return e
}

// admission is one tier's gate: quiesce state, the active-request count
// that drain waits on, and the optional concurrency cap with its bounded
// wait queue.
type admission struct {
	mu       sync.Mutex
	state    string
	reason   string
	active   int
	draining bool
	idle     chan struct{} // closed whenever active drops to 0

	slots        chan struct{} // nil: no max_concurrency
	waiting      int
	maxQueue     int
	queueTimeout time.Duration

	// onChange is called (outside the lock) after every effective
	// quiesce or readmit, to persist the intent.
	onChange func()
}

func newAdmission(maxConcurrency, maxQueue int, queueTimeout time.Duration) *admission {
	a := &admission{state: StateAdmitting, idle: make(chan struct{}), queueTimeout: queueTimeout, maxQueue: maxQueue}
	close(a.idle)
	if maxConcurrency > 0 {
		a.slots = make(chan struct{}, maxConcurrency)
	}
	return a
}

// Lease is one admitted request's hold on its tier: it counts as active
// (drain waits for it) and holds a concurrency slot, until Release — which
// the handler defers, so it runs exactly once however the request ends.
type Lease struct {
	a    *admission
	slot bool
	once sync.Once
}

// Release gives the lease back; later calls do nothing.
func (l *Lease) Release() {
	l.once.Do(func() {
		if l.slot {
			<-l.a.slots
		}
		l.a.mu.Lock()
		l.a.active--
		if l.a.active == 0 {
			close(l.a.idle)
		}
		l.a.mu.Unlock()
	})
}

// Admit decides whether the tier takes a request now: ready (probed, if
// health_path is set), not quiesced, and a concurrency slot within the
// queue timeout. Every refusal is an Unavailable *Error — the exhaustion
// status, before anything reaches the serve.
func (t *Tier) Admit(ctx context.Context) (*Lease, error) {
	if t.prober != nil {
		if r := t.prober.check(); !r.Available {
			return nil, withReason(unavailable("tier not ready: "+r.Reason), "unavailable")
		}
	}
	a := t.adm
	a.mu.Lock()
	if a.state == StateQuiesced {
		a.mu.Unlock()
		return nil, errQuiesced
	}
	if a.active == 0 {
		a.idle = make(chan struct{})
	}
	a.active++
	a.mu.Unlock()
	l := &Lease{a: a}
	if a.slots == nil {
		return l, nil
	}
	select {
	case a.slots <- struct{}{}:
		l.slot = true
		return l, nil
	default:
	}
	a.mu.Lock()
	if a.waiting >= a.maxQueue {
		a.mu.Unlock()
		l.Release()
		return nil, errQueueFull
	}
	a.waiting++
	a.mu.Unlock()
	timer := time.NewTimer(a.queueTimeout)
	defer timer.Stop()
	var err error
	select {
	case a.slots <- struct{}{}:
		l.slot = true
	case <-timer.C:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ErrClientGone
	}
	a.mu.Lock()
	a.waiting--
	a.mu.Unlock()
	if err != nil {
		l.Release()
		return nil, err
	}
	return l, nil
}

// QueueDepth is how many requests wait for a slot on the tier.
func (t *Tier) QueueDepth() int {
	t.adm.mu.Lock()
	defer t.adm.mu.Unlock()
	return t.adm.waiting
}

// AdmissionSnapshot is a tier's admission state for the admin API.
type AdmissionSnapshot struct {
	TierID         string `json:"tier_id"`
	State          string `json:"state"`
	Reason         string `json:"reason"`
	ActiveRequests int    `json:"active_requests"`
	Draining       bool   `json:"draining"`
}

// Snapshot returns the tier's admission state.
func (t *Tier) Snapshot() AdmissionSnapshot {
	a := t.adm
	a.mu.Lock()
	defer a.mu.Unlock()
	return AdmissionSnapshot{TierID: t.ID, State: a.state, Reason: a.reason, ActiveRequests: a.active, Draining: a.draining}
}

// Quiesce stops admitting new requests (in-flight ones continue). It
// invalidates the readiness cache so readmission re-probes.
func (t *Tier) Quiesce(reason string) (AdmissionSnapshot, error) {
	if !reasonPattern.MatchString(reason) {
		return AdmissionSnapshot{}, ErrBadReason
	}
	a := t.adm
	a.mu.Lock()
	if a.draining {
		a.mu.Unlock()
		return AdmissionSnapshot{}, ErrDraining
	}
	changed := a.state != StateQuiesced || a.reason != reason
	a.state, a.reason = StateQuiesced, reason
	a.mu.Unlock()
	if t.prober != nil {
		t.prober.invalidate()
	}
	if changed && a.onChange != nil {
		a.onChange()
	}
	return t.Snapshot(), nil
}

// DrainResult is the outcome of Drain.
type DrainResult struct {
	Drained  bool              `json:"drained"`
	TimedOut bool              `json:"timed_out"`
	Snapshot AdmissionSnapshot `json:"snapshot"`
}

// Drain waits, on a quiesced tier, until its last lease is released or
// timeout passes. The state is unchanged either way; a second concurrent
// drain is refused.
func (t *Tier) Drain(ctx context.Context, timeout time.Duration) (DrainResult, error) {
	if timeout <= 0 {
		return DrainResult{}, ErrBadTimeout
	}
	a := t.adm
	a.mu.Lock()
	switch {
	case a.state != StateQuiesced:
		a.mu.Unlock()
		return DrainResult{}, ErrNotQuiesced
	case a.draining:
		a.mu.Unlock()
		return DrainResult{}, ErrDraining
	}
	idle := a.idle
	a.draining = true
	a.mu.Unlock()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	res := DrainResult{}
	select {
	case <-idle:
		res.Drained = true
	case <-timer.C:
		res.TimedOut = true
	case <-ctx.Done():
		res.TimedOut = true
	}
	a.mu.Lock()
	a.draining = false
	a.mu.Unlock()
	res.Snapshot = t.Snapshot()
	return res, nil
}

// ReadmitResult is the outcome of Readmit.
type ReadmitResult struct {
	Readmitted bool              `json:"readmitted"`
	Reason     string            `json:"reason"`
	Status     AdmissionSnapshot `json:"status"`
	Readiness  Readiness         `json:"-"`
}

// Readmit admits a quiesced tier again, but only once its serve really
// answers as the expected model: it re-probes now and requires the
// identity check to pass with observed == expected == the tier's model.
// Tiers without model_identity, health_path and model cannot be readmitted
// this way (the gate would prove nothing).
func (t *Tier) Readmit() (ReadmitResult, error) {
	if !t.ModelIdentity || t.HealthPath == "" || t.Model == "" || t.prober == nil {
		return ReadmitResult{Reason: "identity_not_configured", Status: t.Snapshot()}, nil
	}
	a := t.adm
	a.mu.Lock()
	draining := a.draining
	a.mu.Unlock()
	if draining {
		return ReadmitResult{}, ErrDraining
	}
	t.prober.invalidate()
	r := t.prober.refresh()
	if !r.Available {
		return ReadmitResult{Reason: r.Reason, Status: t.Snapshot(), Readiness: r}, nil
	}
	if r.ExpectedModel != t.Model || r.ObservedModel != t.Model {
		return ReadmitResult{Reason: "identity_not_verified", Status: t.Snapshot(), Readiness: r}, nil
	}
	a.mu.Lock()
	changed := a.state != StateAdmitting
	a.state, a.reason = StateAdmitting, ""
	a.mu.Unlock()
	if changed && a.onChange != nil {
		a.onChange()
	}
	return ReadmitResult{Readmitted: true, Reason: "readiness_passed", Status: t.Snapshot(), Readiness: r}, nil
}

// Readiness returns the tier's readiness (probing if the cache is stale).
func (t *Tier) Readiness() Readiness {
	if t.prober == nil {
		return Readiness{Available: true, State: "ready", Reason: ReasonNotConfigured, ExpectedModel: t.Model}
	}
	return t.prober.check()
}

// restoreQuiesced applies persisted intent at start-up (no callback).
func (t *Tier) restoreQuiesced(reason string) {
	t.adm.mu.Lock()
	t.adm.state, t.adm.reason = StateQuiesced, reason
	t.adm.mu.Unlock()
}
