package policy_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

func TestRateLimit60RPM(t *testing.T) {
	rl := policy.NewRateLimiter()
	const key = "key:key-prod-1"
	for i := 1; i <= 60; i++ {
		if ok, _ := rl.Allow(key, 60, t0); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	steps := []struct {
		name  string
		at    time.Duration
		ok    bool
		retry time.Duration // when refused
		hdr   int           // Retry-After seconds when refused
	}{
		{name: "61st within the minute is refused", at: 100 * time.Millisecond, retry: 900 * time.Millisecond, hdr: 1},
		{name: "still refused just before the refill", at: time.Second - 1, retry: 1, hdr: 1},
		{name: "one token back after a second", at: time.Second, ok: true},
		{name: "and only one", at: time.Second, retry: time.Second, hdr: 1},
		{name: "and only one, later in that second", at: 1500 * time.Millisecond, retry: 500 * time.Millisecond, hdr: 1},
		{name: "next one a second later", at: 2 * time.Second, ok: true},
		{name: "within the same minute, later", at: 30 * time.Second, ok: true},
	}
	for _, s := range steps {
		ok, retry := rl.Allow(key, 60, t0.Add(s.at))
		if ok != s.ok || (!ok && (retry != s.retry || policy.RetryAfterSeconds(retry) != s.hdr)) {
			t.Fatalf("%s: got %v, retry %v; want %v, %v (%ds)", s.name, ok, retry, s.ok, s.retry, s.hdr)
		}
	}
	// A minute idle refills the whole burst.
	later := t0.Add(5 * time.Minute)
	for i := 1; i <= 60; i++ {
		if ok, _ := rl.Allow(key, 60, later); !ok {
			t.Fatalf("after idling, request %d refused", i)
		}
	}
	if ok, retry := rl.Allow(key, 60, later); ok || retry != time.Second {
		t.Fatalf("61st after idling: %v %v", ok, retry)
	}
}

func TestRateLimitSteadyRate(t *testing.T) {
	tests := []struct {
		rpm   int
		every time.Duration
		allOK bool
	}{
		{rpm: 60, every: time.Second, allOK: true},
		{rpm: 600, every: 100 * time.Millisecond, allOK: true},
		{rpm: 7, every: time.Minute / 7, allOK: true},
		{rpm: 60, every: 900 * time.Millisecond, allOK: false}, // faster than the rate: the burst runs out
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%drpm every %v", tc.rpm, tc.every), func(t *testing.T) {
			rl := policy.NewRateLimiter()
			refused := 0
			for i := range 20 * tc.rpm {
				if ok, _ := rl.Allow("b", tc.rpm, t0.Add(time.Duration(i)*tc.every)); !ok {
					refused++
				}
			}
			if (refused == 0) != tc.allOK {
				t.Errorf("%d refused", refused)
			}
		})
	}
}

func TestRateLimitBucketsAndUnlimited(t *testing.T) {
	rl := policy.NewRateLimiter()
	if ok, _ := rl.Allow("a", 1, t0); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := rl.Allow("a", 1, t0); ok {
		t.Fatal("second within the minute allowed at 1 rpm")
	}
	if ok, _ := rl.Allow("b", 1, t0); !ok {
		t.Fatal("buckets are not independent")
	}
	for _, rpm := range []int{0, -1} {
		for range 1000 {
			if ok, _ := rl.Allow("c", rpm, t0); !ok {
				t.Fatalf("rpm %d limited", rpm)
			}
		}
	}
	if rl.Len() != 2 {
		t.Errorf("unlimited requests created buckets: %d", rl.Len())
	}
}

func TestRateLimitAllowAllIsAtomic(t *testing.T) {
	rl := policy.NewRateLimiter()
	both := []policy.Limit{{Bucket: "node:mini", PerMinute: 2}, {Bucket: "key:k", PerMinute: 1}, {Bucket: "none", PerMinute: 0}}
	if ok, _ := rl.AllowAll(both, t0); !ok {
		t.Fatal("first refused")
	}
	for range 5 {
		if ok, retry := rl.AllowAll(both, t0); ok || retry != time.Minute {
			t.Fatalf("got %v %v; want refused by the key bucket for a minute", ok, retry)
		}
	}
	// The refusals did not use up the node bucket: one token is left.
	if ok, _ := rl.Allow("node:mini", 2, t0); !ok {
		t.Fatal("refused requests drew from the node bucket")
	}
	if ok, _ := rl.Allow("node:mini", 2, t0); ok {
		t.Fatal("node bucket over its burst")
	}
	if ok, _ := rl.AllowAll(nil, t0); !ok {
		t.Error("no limits refused")
	}
}

func TestRateLimitEviction(t *testing.T) {
	rl := policy.NewRateLimiter()
	for i := range 1000 {
		rl.Allow(fmt.Sprintf("idle-%d", i), 60, t0)
	}
	// A busy bucket: its arrival time lies far ahead, so it is not full.
	for range 600 {
		rl.Allow("busy", 600, t0)
	}
	if rl.Len() != 1001 {
		t.Fatalf("Len %d", rl.Len())
	}
	// Within the idle window nothing goes.
	rl.Allow("x", 60, t0.Add(90*time.Second))
	if rl.Len() != 1002 {
		t.Fatalf("evicted too early: %d", rl.Len())
	}
	// Full and unused for more than two minutes: dropped by the next sweep.
	rl.Allow("y", 60, t0.Add(3*time.Minute))
	if got := rl.Len(); got != 3 { // busy (full only at ~t0+1m, kept), x, y
		t.Fatalf("Len after sweep %d, want 3", got)
	}
	rl.Allow("z", 60, t0.Add(10*time.Minute))
	if got := rl.Len(); got != 1 {
		t.Fatalf("Len after a long idle %d, want 1", got)
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	rl := policy.NewRateLimiter()
	var passed atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 500 {
				if ok, _ := rl.Allow("shared", 100, t0); ok {
					passed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if passed.Load() != 100 {
		t.Errorf("%d passed, want exactly the burst of 100", passed.Load())
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 1, time.Nanosecond: 1, time.Second: 1, time.Second + 1: 2, 59500 * time.Millisecond: 60} {
		if got := policy.RetryAfterSeconds(d); got != want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func BenchmarkAllow(b *testing.B) {
	b.Run("one bucket", func(b *testing.B) {
		rl := policy.NewRateLimiter()
		now := t0
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Millisecond)
			rl.Allow("key:key-prod-1", 60000, now)
		}
	})
	b.Run("node and key", func(b *testing.B) {
		rl := policy.NewRateLimiter()
		limits := []policy.Limit{{Bucket: "node:mini", PerMinute: 60000}, {Bucket: "key:key-prod-1", PerMinute: 60000}}
		now := t0
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Millisecond)
			rl.AllowAll(limits, now)
		}
	})
	b.Run("parallel, 64 buckets", func(b *testing.B) {
		rl := policy.NewRateLimiter()
		names := make([]string, 64)
		for i := range names {
			names[i] = fmt.Sprintf("key:k%d", i)
		}
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(n.Add(1))
			for pb.Next() {
				rl.Allow(names[i%64], 1000, time.Now())
				i++
			}
		})
	})
}

func TestRateLimiterZeroValue(t *testing.T) {
	var rl policy.RateLimiter
	if ok, _ := rl.Allow("a", 1, t0); !ok {
		t.Fatal("first refused")
	}
	if ok, _ := rl.Allow("a", 1, t0); ok {
		t.Fatal("second allowed")
	}
}
