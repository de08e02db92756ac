package usage_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// clock is an injected clock tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

var t0 = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

func newStore(c *clock, retention time.Duration, aliases ...string) *usage.Store {
	return usage.New(usage.Options{Retention: retention, Aliases: aliases, Tiers: map[string]string{"chat": "local-a"}, Now: c.now})
}

func sample(c *clock, alias string, in, out int64) *usage.Sample {
	return &usage.Sample{Time: c.now(), Alias: alias, InputTokens: in, OutputTokens: out, Latency: 10 * time.Millisecond}
}

func TestHandlesAreCachedAndReset(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	id := &usage.Identity{User: "a", Node: "n", Tags: []string{"tag:x"}}
	if s.Handle(id) != s.Handle(&usage.Identity{User: "a", Node: "n", Tags: []string{"tag:x"}}) {
		t.Fatal("the same caller resolved twice")
	}
	if s.Handle(id) == s.Handle(&usage.Identity{User: "a", Node: "n", Tags: []string{"tag:y"}}) {
		t.Fatal("a retagged node shares the old handle")
	}
	abc := &usage.Identity{Node: "m", Tags: []string{"tag:a", "tag:b", "tag:c"}}
	if s.Handle(abc) == s.Handle(&usage.Identity{Node: "m", Tags: []string{"tag:a", "tag:x", "tag:c"}}) {
		t.Fatal("a node retagged in the middle of its tags shares the old handle")
	}
	s.Record(s.Handle(id), sample(c, "chat", 1, 1))
	s.Reset()
	s.Record(s.Handle(id), sample(c, "chat", 1, 1))
	if got, _ := s.Sum(usage.KindUser, "a", t0.Add(-time.Hour)); got.Requests != 1 {
		t.Fatalf("after a reset the cached handle counted %d requests, want 1", got.Requests)
	}
}

func TestPruneForgetsTheIdle(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	gone := &usage.Identity{Node: "ci-ephemeral-1", Tags: []string{"tag:ci"}}
	stays := &usage.Identity{User: "a", Node: "laptop"}
	s.Record(s.Handle(gone), sample(c, "chat", 1, 1))
	c.advance(20 * time.Hour)
	s.Record(s.Handle(stays), sample(c, "chat", 1, 1))
	if n := s.Prune(); n != 0 {
		t.Fatalf("pruned %d groups with data in the window", n)
	}
	c.advance(6 * time.Hour)
	if n := s.Prune(); n != 2 {
		t.Fatalf("pruned %d groups, want the idle node and its tag", n)
	}
	if g := s.Groups(usage.KindNode); len(g) != 1 || g[0] != "laptop" {
		t.Fatalf("nodes after prune: %v", g)
	}
	s.Record(s.Handle(gone), sample(c, "chat", 1, 1))
	if got, _ := s.Sum(usage.KindNode, "ci-ephemeral-1", c.now().Add(-time.Hour)); got.Requests != 1 {
		t.Fatalf("a pruned caller that comes back is counted again: %+v", got)
	}
	if len(s.Groups(usage.KindModel)) != 2 {
		t.Fatal("models are never pruned")
	}
}

// A caller resolved but not yet recorded is new, not idle: a Prune in
// between keeps its series, so its first request is counted.
func TestPruneKeepsTheNotYetRecorded(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	h := s.Handle(&usage.Identity{User: "newcomer"})
	c.advance(3 * 24 * time.Hour)
	s.Prune()
	s.Record(h, sample(c, "chat", 1, 0))
	if got, _ := s.Sum(usage.KindUser, "newcomer", c.now().Add(-time.Hour)); got.Requests != 1 {
		t.Fatalf("the newcomer's first request counted %d times, want 1", got.Requests)
	}
}

func TestIdentitiesAndModelsAreSeparate(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat", "code")
	alice := s.Handle(&usage.Identity{User: "alice@example.com", Node: "laptop"})
	ci := s.Handle(&usage.Identity{Node: "ci-1", Tags: []string{"tag:ci"}, Key: "ci-key"})
	anon := s.Handle(&usage.Identity{})
	s.Record(alice, sample(c, "chat", 10, 5))
	s.Record(alice, sample(c, "code", 1, 1))
	s.Record(ci, sample(c, "chat", 100, 50))
	s.Record(anon, sample(c, "invented-by-caller", 7, 7))
	from := c.now().Add(-time.Hour)
	cases := []struct {
		kind     usage.Kind
		group    string
		requests int64
		tokens   int64
	}{
		{usage.KindUser, "alice@example.com", 2, 17},
		{usage.KindNode, "laptop", 2, 17},
		{usage.KindNode, "ci-1", 1, 150},
		{usage.KindTag, "tag:ci", 1, 150},
		{usage.KindKey, "ci-key", 1, 150},
		{usage.KindAnonymous, usage.Anonymous, 1, 14},
		{usage.KindModel, "chat", 2, 165},
		{usage.KindModel, "code", 1, 2},
		{usage.KindModel, usage.Other, 1, 14},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String()+"/"+tc.group, func(t *testing.T) {
			got, ok := s.Sum(tc.kind, tc.group, from)
			if !ok || got.Requests != tc.requests || got.Tokens() != tc.tokens {
				t.Fatalf("Sum = %+v (ok %v), want %d requests, %d tokens", got, ok, tc.requests, tc.tokens)
			}
		})
	}
	if g := s.Groups(usage.KindModel); len(g) != 3 {
		t.Errorf("model groups = %v: an alias no one configured must not become a group", g)
	}
	if tot := s.Total(from); tot.Requests != 4 {
		t.Errorf("total = %+v", tot)
	}
}

func TestBucketsAndWindows(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	h := s.Handle(&usage.Identity{User: "a"})
	// One request a minute for three hours.
	start := c.now()
	for range 180 {
		s.Record(h, sample(c, "chat", 1, 1))
		c.advance(time.Minute)
	}
	end := c.now()
	t.Run("minutes keep the last two hours", func(t *testing.T) {
		pts, _ := s.Series(usage.KindUser, "a", start, end, usage.Minute)
		var n int64
		for _, p := range pts {
			n += p.Requests
		}
		if len(pts) != 120 || n != 119 {
			t.Fatalf("%d minute points with %d requests, want 120 points holding 119 requests", len(pts), n)
		}
	})
	t.Run("hours hold it all", func(t *testing.T) {
		pts, _ := s.Series(usage.KindUser, "a", start, end, usage.Hour)
		var n int64
		for _, p := range pts {
			n += p.Requests
			if p.T.Minute() != 0 {
				t.Errorf("hour point at %v", p.T)
			}
		}
		if n != 180 {
			t.Fatalf("hour points sum to %d, want 180", n)
		}
	})
	t.Run("days", func(t *testing.T) {
		pts, _ := s.Series(usage.KindUser, "a", start.Add(-48*time.Hour), end, usage.Day)
		if len(pts) == 0 || pts[len(pts)-1].Requests != 180 {
			t.Fatalf("day points = %+v", pts)
		}
	})
	t.Run("a day bucket across midnight keeps yesterday's hours", func(t *testing.T) {
		c2 := &clock{time.Date(2026, 3, 2, 22, 0, 0, 0, time.UTC)}
		s2 := newStore(c2, 24*time.Hour, "chat")
		h2 := s2.Handle(&usage.Identity{User: "a"})
		s2.Record(h2, sample(c2, "chat", 1, 1))
		c2.advance(4 * time.Hour)
		s2.Record(h2, sample(c2, "chat", 1, 1))
		pts, _ := s2.Series(usage.KindUser, "a", c2.now().Add(-24*time.Hour), c2.now(), usage.Day)
		var n int64
		for _, p := range pts {
			n += p.Requests
		}
		if n != 2 || len(pts) != 2 {
			t.Fatalf("day points %+v, want yesterday and today", pts)
		}
	})
	t.Run("the window forgets what is older", func(t *testing.T) {
		c.advance(26 * time.Hour)
		if got, _ := s.Sum(usage.KindUser, "a", c.now().Add(-24*time.Hour)); got.Requests != 0 {
			t.Fatalf("after 26 h: %+v", got)
		}
		s.Record(h, sample(c, "chat", 1, 1))
		if got, _ := s.Sum(usage.KindUser, "a", c.now().Add(-24*time.Hour)); got.Requests != 1 {
			t.Fatalf("new request: %+v", got)
		}
	})
	t.Run("unknown group", func(t *testing.T) {
		if _, ok := s.Series(usage.KindUser, "nobody", start, end, usage.Hour); ok {
			t.Fatal("a group with no data answered")
		}
	})
}

func TestLongRetentionKeepsDays(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 30*24*time.Hour, "chat")
	h := s.Handle(&usage.Identity{User: "a"})
	for range 20 {
		s.Record(h, sample(c, "chat", 1, 0))
		c.advance(24 * time.Hour)
	}
	if got, _ := s.Sum(usage.KindUser, "a", c.now().Add(-30*24*time.Hour)); got.Requests != 20 {
		t.Fatalf("30 d window = %d requests, want 20", got.Requests)
	}
}

// A long window sums each request once: not again from an hourly slot
// older than the hourly ring's reach, and not lost from the day the ring
// reaches back into.
func TestLongWindowSumsEachRequestOnce(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 30*24*time.Hour, "chat")
	h := s.Handle(&usage.Identity{User: "a"})
	s.Record(h, sample(c, "chat", 1, 0))
	c.advance(8 * 24 * time.Hour) // past the hourly ring; the slot is not reused
	if got := s.Total(c.now().Add(-30 * 24 * time.Hour)); got.Requests != 1 {
		t.Fatalf("one request 8 days ago summed as %d", got.Requests)
	}
	for range 3 {
		s.Record(h, sample(c, "chat", 1, 0))
		c.advance(time.Hour)
	}
	if got := s.Total(c.now().Add(-30 * 24 * time.Hour)); got.Requests != 4 {
		t.Fatalf("four requests summed as %d", got.Requests)
	}
	if got := s.Total(c.now().Add(-2 * time.Hour)); got.Requests != 2 {
		t.Fatalf("the last two hours summed as %d, want 2", got.Requests)
	}
}

func TestBudgetsAreUTCDays(t *testing.T) {
	c := &clock{time.Date(2026, 3, 2, 23, 0, 0, 0, time.UTC)}
	s := newStore(c, 24*time.Hour, "chat")
	lim := usage.Limits{TokensPerDay: 100, RequestsPerDay: 3}
	h := s.Handle(&usage.Identity{User: "a"})
	for i := range 4 {
		over, resets := s.Admit("team", lim)
		if want := i >= 3; over != want {
			t.Fatalf("request %d: over = %v, want %v", i, over, want)
		}
		if !resets.Equal(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)) {
			t.Fatalf("resets at %v", resets)
		}
		if !over {
			smp := sample(c, "chat", 10, 10)
			smp.Budgets = []string{"team"}
			s.Record(h, smp)
		}
	}
	if u := s.Budget("team"); u.Requests != 3 || u.Tokens != 60 {
		t.Fatalf("spent %+v", u)
	}
	c.advance(time.Hour)
	if over, _ := s.Exceeded("team", lim); over {
		t.Fatal("still over after midnight UTC")
	}
}

// A request must fit in every budget it draws on: refused by one, it
// spends from none (a caller's own budget and a shared one).
func TestAdmitAllSpendsFromNoneOnARefusal(t *testing.T) {
	c := &clock{time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	s := newStore(c, 24*time.Hour, "chat")
	own := usage.Want{Name: "user:a", Limits: usage.Limits{RequestsPerDay: 10}}
	shared := usage.Want{Name: "team", Limits: usage.Limits{RequestsPerDay: 1}}
	for i, want := range []int{-1, 1, 1} {
		if got, _ := s.AdmitAll([]usage.Want{own, shared}); got != want {
			t.Fatalf("request %d: refused by %d, want %d", i, got, want)
		}
	}
	if u := s.Budget("user:a"); u.Requests != 1 {
		t.Errorf("the caller's own budget counted %d requests, want 1 (the refused ones spent from it)", u.Requests)
	}
	if u := s.Budget("team"); u.Requests != 1 {
		t.Errorf("the shared budget counted %d requests, want 1", u.Requests)
	}
}

// Callers racing for the last request of a shared budget: each request
// that the shared budget admits is counted by the caller's own budget too,
// and no refused one is.
func TestAdmitAllUnderRace(t *testing.T) {
	c := &clock{time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)}
	s := newStore(c, 24*time.Hour, "chat")
	shared := usage.Want{Name: "team", Limits: usage.Limits{RequestsPerDay: 5}}
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for i := range 64 {
		own := usage.Want{Name: fmt.Sprintf("user:%d", i%4), Limits: usage.Limits{RequestsPerDay: 1000}}
		wg.Go(func() {
			if over, _ := s.AdmitAll([]usage.Want{own, shared}); over < 0 {
				admitted.Add(1)
			}
		})
	}
	wg.Wait()
	var own int64
	for i := range 4 {
		own += s.Budget(fmt.Sprintf("user:%d", i)).Requests
	}
	if got := s.Budget("team").Requests; got != 5 || admitted.Load() != 5 || own != 5 {
		t.Errorf("shared budget counted %d, own budgets %d, admitted %d: want 5 each", got, own, admitted.Load())
	}
}

func fill(s *usage.Store, c *clock, identities, aliases int, span time.Duration) {
	names := make([]string, aliases)
	for i := range names {
		names[i] = fmt.Sprintf("alias-%d", i)
	}
	handles := make([]*usage.Handle, identities)
	for i := range handles {
		handles[i] = s.Handle(&usage.Identity{User: fmt.Sprintf("user-%d@example.com", i), Node: fmt.Sprintf("node-%d", i)})
	}
	end := c.now()
	smp := usage.Sample{InputTokens: 100, OutputTokens: 50, CachedTokens: 10, Latency: time.Second, TTFT: time.Millisecond}
	// Every identity uses every alias in every hour, and every minute of
	// the last two hours: every bucket of every ring is in use.
	for t := end.Add(-span); t.Before(end); t = t.Add(time.Hour) {
		for i, h := range handles {
			smp.Time, smp.Alias = t, names[(i+t.Hour())%aliases]
			s.Record(h, &smp)
		}
	}
	for t := end.Add(-2 * time.Hour); t.Before(end); t = t.Add(time.Minute) {
		for i, h := range handles {
			smp.Time, smp.Alias = t, names[i%aliases]
			s.Record(h, &smp)
		}
	}
}

func aliasNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("alias-%d", i)
	}
	return out
}

// TestMemoryForAWeek measures the store for 7 days × 1,000 identities
// (each a user on a node of its own: 2,000 identity series) × 20 aliases
// with every bucket in use, and saves and restores it.
func TestMemoryForAWeek(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a week of buckets")
	}
	c := &clock{t0}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := usage.New(usage.Options{Retention: 7 * 24 * time.Hour, Aliases: aliasNames(20), Now: c.now})
	fill(s, c, 1000, 20, 7*24*time.Hour)
	runtime.GC()
	runtime.ReadMemStats(&after)
	mb := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
	t.Logf("7 d × 1000 identities × 20 aliases: %.1f MiB of heap", mb)
	if mb >= 64 {
		t.Errorf("%.1f MiB, want < 64", mb)
	}
	path := filepath.Join(t.TempDir(), "stats.bin")
	start := time.Now()
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	fi, _ := os.Stat(path)
	t.Logf("snapshot: %.1f MiB written in %v", float64(fi.Size())/(1<<20), took)
	r := usage.New(usage.Options{Retention: 7 * 24 * time.Hour, Aliases: aliasNames(20), Now: c.now})
	start = time.Now()
	if err := r.Load(path, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	t.Logf("restore: %v", time.Since(start))
	from := c.now().Add(-7 * 24 * time.Hour)
	if a, b := s.Total(from), r.Total(from); a != b {
		t.Fatalf("restored totals %+v, want %+v", b, a)
	}
	runtime.KeepAlive(s)
}

func TestSnapshotRoundTrip(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	h := s.Handle(&usage.Identity{User: "a", Node: "n", Tags: []string{"tag:x"}, Key: "k"})
	s.Exceeded("team", usage.Limits{TokensPerDay: 1000})
	for range 5 {
		s.Admit("team", usage.Limits{TokensPerDay: 1000})
		smp := sample(c, "chat", 3, 4)
		smp.Budgets = []string{"team"}
		s.Record(h, smp)
		c.advance(7 * time.Minute)
	}
	path := filepath.Join(t.TempDir(), "stats.bin")
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	c.advance(time.Minute)
	r := newStore(c, 24*time.Hour, "chat")
	if err := r.Load(path, time.Hour); err != nil {
		t.Fatal(err)
	}
	from := c.now().Add(-24 * time.Hour)
	for _, k := range []usage.Kind{usage.KindUser, usage.KindNode, usage.KindTag, usage.KindKey, usage.KindModel} {
		for _, g := range s.Groups(k) {
			a, _ := s.Sum(k, g, from)
			b, _ := r.Sum(k, g, from)
			if a != b {
				t.Errorf("%v %s: restored %+v, want %+v", k, g, b, a)
			}
		}
	}
	pa, _ := s.Series(usage.KindUser, "a", from, c.now(), usage.Minute)
	pb, _ := r.Series(usage.KindUser, "a", from, c.now(), usage.Minute)
	if fmt.Sprint(pa) != fmt.Sprint(pb) {
		t.Error("minute buckets differ after restore")
	}
	if u := r.Budget("team"); u.Tokens != 35 || u.Requests != 5 || r.Limits("team").TokensPerDay != 1000 {
		t.Errorf("restored budget %+v %+v", u, r.Limits("team"))
	}
}

func TestSnapshotRefused(t *testing.T) {
	c := &clock{t0}
	s := newStore(c, 24*time.Hour, "chat")
	s.Record(s.Handle(&usage.Identity{User: "a"}), sample(c, "chat", 1, 1))
	good, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	cases := []struct {
		name string
		data []byte
		age  time.Duration
		want error
	}{
		{name: "empty", data: []byte{}, want: usage.ErrCorrupt},
		{name: "truncated", data: good[:len(good)/2], want: usage.ErrCorrupt},
		{name: "a bit flipped", data: flip(len(good) / 2), want: usage.ErrCorrupt},
		{name: "checksum flipped", data: flip(len(good) - 1), want: usage.ErrCorrupt},
		{name: "JSON", data: []byte(`{"version":1}`), want: usage.ErrCorrupt},
		{name: "stale", data: good, age: 8 * 24 * time.Hour, want: usage.ErrStale},
		{name: "saved in the future", data: good, age: -time.Hour, want: usage.ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cc := &clock{t0.Add(tc.age)}
			r := newStore(cc, 24*time.Hour, "chat")
			path := filepath.Join(t.TempDir(), "stats.bin")
			os.WriteFile(path, tc.data, 0o600)
			if err := r.Load(path, 7*24*time.Hour); !errors.Is(err, tc.want) {
				t.Fatalf("Load = %v, want %v", err, tc.want)
			}
			if r.Total(t0.Add(-time.Hour)).Requests != 0 {
				t.Fatal("a refused snapshot left counts behind")
			}
		})
	}
	t.Run("stale keeps today's budget spends", func(t *testing.T) {
		c := &clock{t0}
		s := newStore(c, 24*time.Hour, "chat")
		lim := usage.Limits{RequestsPerDay: 1}
		if over, _ := s.Admit("team", lim); over {
			t.Fatal("the first request was refused")
		}
		b, _ := s.MarshalBinary()
		later := &clock{t0.Add(2 * time.Hour)} // the same UTC day as t0 (10:30)
		r := newStore(later, 24*time.Hour, "chat")
		if err := r.UnmarshalBinary(b, time.Hour); !errors.Is(err, usage.ErrStale) {
			t.Fatalf("UnmarshalBinary = %v, want ErrStale", err)
		}
		if r.Total(t0.Add(-time.Hour)).Requests != 0 {
			t.Error("a stale snapshot's statistics were restored")
		}
		if over, _ := r.Admit("team", lim); !over {
			t.Error("after a stale restore the day budget was spent twice")
		}
	})
	t.Run("missing", func(t *testing.T) {
		r := newStore(c, 24*time.Hour, "chat")
		if err := r.Load(filepath.Join(t.TempDir(), "none"), time.Hour); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load = %v", err)
		}
	})
}

// BenchmarkRecord is the hot path: one finished request through a
// resolved handle (user, node and key series, the model, the total).
func BenchmarkRecord(b *testing.B) {
	c := &clock{t0}
	s := usage.New(usage.Options{Aliases: aliasNames(20), Now: c.now})
	h := s.Handle(&usage.Identity{User: "alice@example.com", Node: "laptop", Key: "k1"})
	smp := usage.Sample{Time: t0, Alias: "alias-3", InputTokens: 100, OutputTokens: 20, Latency: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		s.Record(h, &smp)
	}
}

// BenchmarkHandleAndRecord is a request's whole accounting: the
// caller's cached handle looked up, then the record.
func BenchmarkHandleAndRecord(b *testing.B) {
	c := &clock{t0}
	s := usage.New(usage.Options{Aliases: aliasNames(20), Now: c.now})
	id := &usage.Identity{User: "alice@example.com", Node: "laptop", Tags: []string{"tag:a", "tag:b"}, Key: "k1"}
	smp := usage.Sample{Time: t0, Alias: "alias-3", InputTokens: 100, OutputTokens: 20, Latency: time.Second, Budgets: []string{"team"}}
	b.ReportAllocs()
	for b.Loop() {
		s.Record(s.Handle(id), &smp)
	}
}

// BenchmarkRecordParallel is BenchmarkRecord from every core, distinct
// callers.
func BenchmarkRecordParallel(b *testing.B) {
	c := &clock{t0}
	s := usage.New(usage.Options{Aliases: aliasNames(20), Now: c.now})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		h := s.Handle(&usage.Identity{User: fmt.Sprint(time.Now().UnixNano()), Node: "n"})
		smp := usage.Sample{Time: t0, Alias: "alias-3", InputTokens: 100, OutputTokens: 20, Latency: time.Second}
		for pb.Next() {
			s.Record(h, &smp)
		}
	})
}

// BenchmarkSnapshot writes a full week × 1000 identities × 20 aliases.
func BenchmarkSnapshot(b *testing.B) {
	c := &clock{t0}
	s := usage.New(usage.Options{Retention: 7 * 24 * time.Hour, Aliases: aliasNames(20), Now: c.now})
	fill(s, c, 1000, 20, 7*24*time.Hour)
	path := filepath.Join(b.TempDir(), "stats.bin")
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Save(path); err != nil {
			b.Fatal(err)
		}
	}
}
