// Package usage is the router's usage accounting: time-bucketed aggregates
// of every inference request, kept separately per identity dimension (the
// tailnet user, node and tag, the API key, the anonymous dev caller) and
// per model alias, with the day's token budgets of identities and named
// shared buckets. It is what /admin/stats, /admin/stats/usage and
// /v1/usage read, and what the stats snapshot saves and restores.
//
// Memory is bounded by what the operator controls, never by what a caller
// sends: identities come from the tailnet and the key store, aliases only
// from the configuration (an alias the router does not route is counted
// as "other"), and each series is a fixed set of rings — per minute for
// the last two hours, per hour for the retention window (at most 7 days),
// per day beyond it.
package usage

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is an identity dimension (or the model dimension).
type Kind uint8

const (
	KindUser Kind = iota
	KindNode
	KindTag
	KindKey
	KindAnonymous
	KindModel
	numKinds
)

var kindNames = [...]string{"user", "node", "tag", "key", "anonymous", "model"}

func (k Kind) String() string { return kindNames[k] }

// ParseKind reads a dimension name ("user", "node", "tag", "key",
// "anonymous", "model").
func ParseKind(s string) (Kind, bool) {
	for i, n := range kindNames {
		if n == s {
			return Kind(i), true
		}
	}
	return 0, false
}

// Anonymous is the id of the anonymous caller (the dev listener without a
// key).
const Anonymous = "anonymous"

// Other is the model group of requests that named no routed alias.
const Other = "other"

// Counters are the sums kept in every bucket. Latencies are microseconds.
type Counters struct {
	Requests, Errors                                         int64
	InputTokens, OutputTokens, CachedTokens, ReasoningTokens int64
	EstimatedRequests, Streamed                              int64
	LatencyUS, TTFTUS                                        int64
	// GuardrailBlocks counts requests a guardrail refused (input) or
	// cut (output): who keeps running into the operator's rules.
	GuardrailBlocks int64
}

// Add adds o to c.
func (c *Counters) Add(o *Counters) {
	c.Requests += o.Requests
	c.Errors += o.Errors
	c.InputTokens += o.InputTokens
	c.OutputTokens += o.OutputTokens
	c.CachedTokens += o.CachedTokens
	c.ReasoningTokens += o.ReasoningTokens
	c.EstimatedRequests += o.EstimatedRequests
	c.Streamed += o.Streamed
	c.LatencyUS += o.LatencyUS
	c.TTFTUS += o.TTFTUS
	c.GuardrailBlocks += o.GuardrailBlocks
}

// Tokens is the input plus output tokens: what a token budget counts.
func (c *Counters) Tokens() int64 { return c.InputTokens + c.OutputTokens }

// Sample is one finished request.
type Sample struct {
	Time  time.Time
	Alias string
	// Error: the request did not succeed (status >= 400, or a stream that
	// broke after it started).
	Error                                                    bool
	InputTokens, OutputTokens, CachedTokens, ReasoningTokens int64
	// Estimated: the tokens are the router's estimate, not the serve's.
	Estimated, Streamed bool
	Latency, TTFT       time.Duration
	// GuardrailBlocked: a guardrail refused the request or cut its answer.
	GuardrailBlocked bool
	// Budgets name the day budgets the request spends from (see
	// Exceeded).
	Budgets []string
	// BudgetTokensOnly ([admin.stats] token_tracking = false): the
	// request's tokens spend from its budgets but are not counted in the
	// statistics, so a tokens_per_day budget holds either way.
	BudgetTokensOnly bool
}

func (s *Sample) counters() Counters {
	c := Counters{Requests: 1, InputTokens: s.InputTokens, OutputTokens: s.OutputTokens,
		CachedTokens: s.CachedTokens, ReasoningTokens: s.ReasoningTokens,
		LatencyUS: s.Latency.Microseconds(), TTFTUS: s.TTFT.Microseconds()}
	if s.Error {
		c.Errors = 1
	}
	if s.Estimated {
		c.EstimatedRequests = 1
	}
	if s.Streamed {
		c.Streamed = 1
	}
	if s.BudgetTokensOnly {
		c.InputTokens, c.OutputTokens, c.CachedTokens, c.ReasoningTokens, c.EstimatedRequests = 0, 0, 0, 0, 0
	}
	if s.GuardrailBlocked {
		c.GuardrailBlocks = 1
	}
	return c
}

// Identity is who made a request, as the router authenticated it. Each
// non-empty part is a series of its own.
type Identity struct {
	User, Node string
	Tags       []string
	Key        string
}

// Options configure a Store.
type Options struct {
	// Retention is the retention window (default 24h). Hourly buckets
	// cover min(Retention, 7d) (at least 25 h, so "today" is always
	// answerable); daily ones the rest.
	Retention time.Duration
	// Aliases are the routed aliases; others are counted as Other.
	Aliases []string
	// Tiers maps an alias to its tier id (for by_model).
	Tiers map[string]string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

const (
	minuteBuckets  = 120
	maxHourBuckets = 7 * 24
)

// Store holds the aggregates. Its methods are safe for concurrent use.
type Store struct {
	retention time.Duration
	hours     int
	days      int
	now       func() time.Time
	aliases   map[string]*series
	tiers     map[string]string
	other     *series
	global    *series
	started   time.Time

	mu     sync.RWMutex
	groups [numKinds]map[string]*series
	// handles caches resolved handles by identity (bounded like groups).
	handles map[handleKey]*Handle
	// gen counts Reset and Prune (under mu): a handle resolved across one
	// may hold series they dropped, and is not cached.
	gen uint64

	budgets budgets
	// snapshotSize is the last snapshot's size: the next one's buffer.
	snapshotSize atomic.Int64
}

// New returns an empty store.
func New(opts Options) *Store {
	s := &Store{retention: opts.Retention, now: opts.Now, tiers: opts.Tiers}
	if s.retention <= 0 {
		s.retention = 24 * time.Hour
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.hours = int((min(s.retention, maxHourBuckets*time.Hour) + time.Hour - 1) / time.Hour)
	s.hours = max(s.hours, 25)
	if s.retention > maxHourBuckets*time.Hour {
		s.days = int((s.retention+24*time.Hour-1)/(24*time.Hour)) + 1
	}
	for k := range s.groups {
		s.groups[k] = map[string]*series{}
	}
	s.aliases = map[string]*series{}
	for _, a := range opts.Aliases {
		s.aliases[a] = s.newSeries()
		s.groups[KindModel][a] = s.aliases[a]
	}
	s.other = s.newSeries()
	s.groups[KindModel][Other] = s.other
	s.global = s.newSeries()
	s.budgets.init()
	s.started = s.now()
	return s
}

// Retention is the retention window.
func (s *Store) Retention() time.Duration { return s.retention }

// Started is when the store was created (uptime resets on restore).
func (s *Store) Started() time.Time { return s.started }

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// Tier is the tier of a routed alias ("" for Other).
func (s *Store) Tier(alias string) string { return s.tiers[alias] }

// Handle is an identity's series, resolved once: recording through it
// takes no map lookups and no allocations.
type Handle struct {
	series []*series
	tags   []string // the identity's tags, to tell retagged nodes apart
}

// handleKey identifies a caller's handle; a map lookup with it does not
// allocate. Its tag fields narrow the lookup; the handle's own tags
// decide (a node retagged [a,b,c] → [a,x,c] has the same key).
type handleKey struct {
	user, node, firstTag, lastTag, key string
	tags                               int
}

// Handle resolves id's series, creating them on first use; the handle is
// cached, so a known caller costs one map lookup and no allocation.
func (s *Store) Handle(id *Identity) *Handle {
	k := handleKey{user: id.User, node: id.Node, key: id.Key, tags: len(id.Tags)}
	if len(id.Tags) > 0 {
		k.firstTag, k.lastTag = id.Tags[0], id.Tags[len(id.Tags)-1]
	}
	s.mu.RLock()
	h := s.handles[k]
	s.mu.RUnlock()
	if h != nil && slices.Equal(h.tags, id.Tags) {
		return h
	}
	for {
		s.mu.RLock()
		gen := s.gen
		s.mu.RUnlock()
		h = s.resolve(id)
		s.mu.Lock()
		if s.gen != gen {
			// A Reset or Prune ran meanwhile and may have dropped the
			// series h holds: resolve again.
			s.mu.Unlock()
			continue
		}
		if s.handles == nil {
			s.handles = map[handleKey]*Handle{}
		}
		s.handles[k] = h
		s.mu.Unlock()
		return h
	}
}

func (s *Store) resolve(id *Identity) *Handle {
	h := &Handle{tags: slices.Clone(id.Tags)}
	add := func(k Kind, name string) {
		if name != "" {
			h.series = append(h.series, s.group(k, name))
		}
	}
	add(KindUser, id.User)
	add(KindNode, id.Node)
	for _, t := range id.Tags {
		add(KindTag, t)
	}
	add(KindKey, id.Key)
	if len(h.series) == 0 {
		add(KindAnonymous, Anonymous)
	}
	return h
}

func (s *Store) group(k Kind, name string) *series {
	s.mu.RLock()
	g := s.groups[k][name]
	s.mu.RUnlock()
	if g != nil {
		return g
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.groups[k][name]; g == nil {
		g = s.newSeries()
		s.groups[k][name] = g
	}
	return g
}

// Record counts one finished request of h.
func (s *Store) Record(h *Handle, smp *Sample) {
	t := smp.Time
	if t.IsZero() {
		t = s.now()
	}
	c := smp.counters()
	unix := t.Unix()
	for _, g := range h.series {
		g.add(unix, &c)
	}
	m := s.aliases[smp.Alias]
	if m == nil {
		m = s.other
	}
	m.add(unix, &c)
	s.global.add(unix, &c)
	for _, b := range smp.Budgets {
		s.budgets.spend(b, unix, smp.InputTokens+smp.OutputTokens)
	}
}

// Groups lists the groups of dimension k that have data, sorted.
func (s *Store) Groups(k Kind) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.groups[k]))
	for name := range s.groups[k] {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Reset drops every count (budgets included).
func (s *Store) Reset() {
	s.mu.Lock()
	s.gen++
	clear(s.handles)
	for k := range s.groups {
		for name, g := range s.groups[k] {
			if Kind(k) == KindModel {
				g.clear()
			} else {
				delete(s.groups[k], name)
			}
		}
	}
	s.mu.Unlock()
	s.global.clear()
	s.budgets.reset()
}

// Prune forgets identities with no data left in the retention window
// (a node that left the tailnet, a deleted key, an ephemeral CI node), so
// memory follows who is active, not everyone who ever called. It returns
// how many groups it dropped.
func (s *Store) Prune() int {
	cutoff := s.now().Add(-s.retention).Unix() - hour
	s.budgets.prune(StartOfDay(s.now()).Unix())
	stale := map[*series]bool{}
	s.mu.RLock()
	for k := range s.groups {
		if Kind(k) == KindModel {
			continue
		}
		for _, g := range s.groups[k] {
			// newest 0: made by a Handle whose first Record is still to
			// come, not idle.
			if n := g.newest(); n != 0 && n < cutoff {
				stale[g] = true
			}
		}
	}
	s.mu.RUnlock()
	if len(stale) == 0 {
		return 0
	}
	n := 0
	s.mu.Lock()
	for k := range s.groups {
		for name, g := range s.groups[k] {
			if stale[g] && g.newest() < cutoff {
				delete(s.groups[k], name)
				n++
			}
		}
	}
	// Handles may point at dropped series: resolve them again.
	s.gen++
	clear(s.handles)
	s.mu.Unlock()
	return n
}

// newest is the start of g's newest bucket (0: none).
func (g *series) newest() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var t int64
	for _, ring := range [][]bucket{g.minute, g.hour, g.day} {
		for i := range ring {
			t = max(t, ring[i].t)
		}
	}
	return t
}

// bucket is one ring slot: its start (unix seconds; 0 = empty) and sums.
type bucket struct {
	t int64
	c Counters
}

// series is one group's rings.
type series struct {
	mu     sync.Mutex
	minute []bucket
	hour   []bucket
	day    []bucket
}

func (s *Store) newSeries() *series {
	g := &series{minute: make([]bucket, minuteBuckets), hour: make([]bucket, s.hours)}
	if s.days > 0 {
		g.day = make([]bucket, s.days)
	}
	return g
}

// Bucket widths in seconds.
const (
	minute = 60
	hour   = 3600
	day    = 86400
)

func addTo(ring []bucket, width, unix int64, c *Counters) {
	if len(ring) == 0 || unix <= 0 {
		return // 0 marks an empty slot; a clock before 1970 counts nothing
	}
	start := unix - unix%width
	b := &ring[(start/width)%int64(len(ring))]
	if b.t != start {
		if b.t > start {
			return // older than the ring holds
		}
		*b = bucket{t: start}
	}
	b.c.Add(c)
}

func (g *series) add(unix int64, c *Counters) {
	g.mu.Lock()
	addTo(g.minute, minute, unix, c)
	addTo(g.hour, hour, unix, c)
	addTo(g.day, day, unix, c)
	g.mu.Unlock()
}

func (g *series) clear() {
	g.mu.Lock()
	clear(g.minute)
	clear(g.hour)
	clear(g.day)
	g.mu.Unlock()
}
