package telemetry_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/telemetry"
)

// Record and ObserveRequest run once per request; both should cost well
// under a microsecond and allocate nothing.

func BenchmarkRecord(b *testing.B) {
	for _, bc := range []struct {
		name string
		sink bool
	}{{"ring only", false}, {"with JSONL sink", true}} {
		b.Run(bc.name, func(b *testing.B) {
			opts := telemetry.Options{Aliases: []string{"llm.primary"}, Logger: quietLogger()}
			if bc.sink {
				opts.LogPath = filepath.Join(b.TempDir(), "d.jsonl")
			}
			r, err := telemetry.New(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			d := served("llm.primary", "qwen-a", 100, 20, 12.5)
			d.RequestID = "req_0123456789abcdef"
			b.ReportAllocs()
			for b.Loop() {
				r.Record(d)
			}
		})
	}
}

func BenchmarkObserveRequest(b *testing.B) {
	r, err := telemetry.New(telemetry.Options{Aliases: []string{"llm.primary", "chat"}, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	m, err := telemetry.NewMetrics(r, telemetry.MetricsOptions{Tiers: []string{"qwen-a", "qwen-b"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest("llm.primary", "qwen-a", 200, 50*time.Millisecond, 49*time.Millisecond, 10*time.Millisecond)
		}
	})
	b.Run("unknown alias", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.ObserveRequest("gpt-4o", "", 404, time.Millisecond, 0, 0)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ObserveRequest("chat", "qwen-b", 200, 50*time.Millisecond, 49*time.Millisecond, 10*time.Millisecond)
			}
		})
	})
}
