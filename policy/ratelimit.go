package policy

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// RateLimiter is a token-bucket limiter keyed by string (a key's or a
// node's bucket, see Limits). A bucket holds perMinute tokens (the burst)
// and gets one back every minute/perMinute: at 60 rpm, 60 requests pass at
// once, the 61st within the minute is refused, and one more passes each
// second after that.
//
// It is implemented as GCRA: per bucket only the theoretical arrival time
// of the next request is kept, one int64. A bucket whose arrival time lies
// in the past is full, which is the same as having no entry; entries full
// for longer than two minutes are dropped in a sweep at most once a
// minute, so memory is bounded by the buckets used in the last few
// minutes (authenticated keys and tailnet nodes). Time is what callers
// pass; safe for concurrent use. The zero value is ready to use.
type RateLimiter struct {
	mu        sync.Mutex
	started   bool
	base      time.Time        // origin of the int64 clock below
	tat       map[string]int64 // bucket → theoretical arrival time, ns since base
	lastSweep int64
}

const (
	// rateIdle is how long a full bucket is kept before eviction.
	rateIdle = int64(2 * time.Minute)
	// rateSweepEvery is the minimum clock time between two sweeps.
	rateSweepEvery = int64(time.Minute)
)

// NewRateLimiter returns an empty limiter.
func NewRateLimiter() *RateLimiter {
	return &RateLimiter{tat: make(map[string]int64)}
}

// Limit is one bucket a request draws from.
type Limit struct {
	// Bucket names the bucket ("node:mini", "key:key-prod-1").
	Bucket string
	// PerMinute is the rate and burst; 0 means no limit.
	PerMinute int
}

// Limits are the buckets a request of p draws from: the node's, at the
// grant's rpm, and the key's, at its rate_limit. Entries with PerMinute 0
// are no limit.
func (p *Principal) Limits() [2]Limit {
	var l [2]Limit
	if id := p.Identity; id != nil && p.RPM > 0 {
		name := id.Node
		if name == "" {
			name = id.IP.String()
		}
		l[0] = Limit{Bucket: "node:" + name, PerMinute: p.RPM}
	}
	if k := p.Key; k != nil && k.RateLimit > 0 {
		l[1] = Limit{Bucket: "key:" + k.ID, PerMinute: k.RateLimit}
	}
	return l
}

// Allow takes one token from bucket key at perMinute (<= 0: unlimited).
// When refused, retryAfter is how long until a token is back.
func (l *RateLimiter) Allow(key string, perMinute int, now time.Time) (ok bool, retryAfter time.Duration) {
	return l.AllowAll([]Limit{{Bucket: key, PerMinute: perMinute}}, now)
}

// AllowAll takes one token from every bucket of limits, or from none: a
// request refused by one bucket does not use up the others. retryAfter is
// the longest wait among the refusing buckets.
func (l *RateLimiter) AllowAll(limits []Limit, now time.Time) (ok bool, retryAfter time.Duration) {
	active := false
	for _, lim := range limits {
		if lim.PerMinute > 0 {
			active = true
		}
	}
	if !active {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		l.started, l.base = true, now
		if l.tat == nil {
			l.tat = make(map[string]int64)
		}
	}
	t := int64(now.Sub(l.base))
	var wait int64
	for _, lim := range limits {
		if lim.PerMinute <= 0 {
			continue
		}
		if _, w := l.next(lim, t); w > wait {
			wait = w
		}
	}
	if wait > 0 {
		return false, time.Duration(wait)
	}
	for _, lim := range limits {
		if lim.PerMinute > 0 {
			next, _ := l.next(lim, t)
			l.tat[lim.Bucket] = next
		}
	}
	if t-l.lastSweep >= rateSweepEvery {
		l.sweep(t)
	}
	return true, 0
}

// Exhausted reports whether bucket key at perMinute would refuse a
// request now, without taking a token (for limits that count failures
// only, checked before the attempt), and how long until it would not.
func (l *RateLimiter) Exhausted(key string, perMinute int, now time.Time) (bool, time.Duration) {
	if perMinute <= 0 {
		return false, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return false, 0
	}
	_, wait := l.next(Limit{Bucket: key, PerMinute: perMinute}, int64(now.Sub(l.base)))
	return wait > 0, time.Duration(wait)
}

// next is the bucket's arrival time after one more request at t, and how
// long the request would have to wait (0: it may pass now).
func (l *RateLimiter) next(lim Limit, t int64) (next, wait int64) {
	interval := int64(time.Minute) / int64(lim.PerMinute)
	if interval < 1 {
		interval = 1
	}
	window := interval * int64(lim.PerMinute) // the burst, ≈ one minute
	tat, ok := l.tat[lim.Bucket]
	if !ok || tat < t {
		tat = t
	}
	next = tat + interval
	if over := next - t - window; over > 0 {
		return next, over
	}
	return next, 0
}

func (l *RateLimiter) sweep(t int64) {
	l.lastSweep = t
	for k, tat := range l.tat {
		if tat+rateIdle < t {
			delete(l.tat, k)
		}
	}
}

// Len is the number of buckets currently held (for tests and metrics).
func (l *RateLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tat)
}

// RetryAfterSeconds is the Retry-After header value for a wait: whole
// seconds, rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		return 1
	}
	return s
}

// InFlightCap is one bucket of requests in flight: a node's or a key's.
type InFlightCap struct {
	Bucket string
	// Max is the cap; 0 means none.
	Max int
}

// InFlightCaps are the in-flight buckets a request of p holds a place in:
// the node's, at its grants' max_concurrency or else share, and the key's,
// at the key's max_concurrency or else share. So one caller — a node, or
// a key shared by many — cannot take every slot of the router. Callers
// without a tailnet identity (the loopback listeners) have no node bucket.
func (p *Principal) InFlightCaps(share int) [2]InFlightCap {
	var c [2]InFlightCap
	if id := p.Identity; id != nil {
		name := id.Node
		if name == "" {
			name = id.IP.String()
		}
		c[0] = InFlightCap{Bucket: "node:" + name, Max: cmp.Or(p.MaxConcurrency, share)}
	}
	if k := p.Key; k != nil {
		c[1] = InFlightCap{Bucket: "key:" + k.ID, Max: cmp.Or(k.MaxConcurrency, share)}
	}
	return c
}

// InFlight counts requests in flight per bucket.
type InFlight struct {
	mu sync.Mutex
	n  map[string]int
}

// NewInFlight returns an empty counter.
func NewInFlight() *InFlight { return &InFlight{n: map[string]int{}} }

// Acquire takes a place in every capped bucket of caps, or in none, and
// returns the release; ok is false when a bucket is full.
func (f *InFlight) Acquire(caps []InFlightCap) (release func(), ok bool) {
	if !slices.ContainsFunc(caps, func(c InFlightCap) bool { return c.Max > 0 }) {
		return func() {}, true // nothing capped: no lock on the hot path
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range caps {
		if c.Max > 0 && f.n[c.Bucket] >= c.Max {
			return nil, false
		}
	}
	for _, c := range caps {
		if c.Max > 0 {
			f.n[c.Bucket]++
		}
	}
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range caps {
			if c.Max > 0 {
				if f.n[c.Bucket]--; f.n[c.Bucket] <= 0 {
					delete(f.n, c.Bucket)
				}
			}
		}
	}, true
}
