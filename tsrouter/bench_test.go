package tsrouter_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// The relay hot path, over real loopback sockets against a zero-delay fake
// serve. Each benchmark has a "direct" twin that talks to the serve itself:
// the router's cost is the difference (time and allocs/op, which count the
// client, router and serve together).
//
//	go test -run '^$' -bench . -benchmem -count 6 ./tsrouter/ | tee new.txt
//	benchstat new.txt

const benchBody = `{"model":"chat","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello in five words."}],"max_tokens":64,"temperature":0.2}`

func benchTargets(b *testing.B, opts fakeserve.Options) map[string]string {
	opts.Model = "served-model"
	_, url, stop, err := fakeserve.Start(b.Context(), "127.0.0.1:0", opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	router := startRouter(b, oneTier(url, ""), routerOpts{})
	return map[string]string{"direct": url, "router": router}
}

func newBenchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

func BenchmarkChat(b *testing.B) {
	targets := benchTargets(b, fakeserve.Options{})
	for _, name := range []string{"direct", "router"} {
		body := strings.Replace(benchBody, `"chat"`, map[string]string{"direct": `"served-model"`, "router": `"chat"`}[name], 1)
		b.Run(name, func(b *testing.B) {
			c := newBenchClient()
			url := targets[name] + "/v1/chat/completions"
			b.ReportAllocs()
			for b.Loop() {
				resp, err := c.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkStream measures a whole short stream at zero delay (role, 6
// deltas, finish, [DONE]): the serve produces everything at once, so this is
// the relay's throughput cost per stream.
func BenchmarkStream(b *testing.B) { benchStream(b, fakeserve.Options{}) }

// BenchmarkStreamTTFT paces the serve (first token at once, then one delta
// per 2 ms) so ttft-ns/op is the time to the first content delta as a
// client sees it, not a batch of already-produced events.
func BenchmarkStreamTTFT(b *testing.B) {
	benchStream(b, fakeserve.Options{Pace: 2 * time.Millisecond, Deltas: []string{"a", "b"}})
}

func benchStream(b *testing.B, opts fakeserve.Options) {
	targets := benchTargets(b, opts)
	for _, name := range []string{"direct", "router"} {
		body := strings.Replace(benchBody, `"chat"`, map[string]string{"direct": `"served-model"`, "router": `"chat"`}[name], 1)
		body = strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
		b.Run(name, func(b *testing.B) {
			c := newBenchClient()
			url := targets[name] + "/v1/chat/completions"
			var ttft time.Duration
			b.ReportAllocs()
			rd := bufio.NewReaderSize(nil, 4096)
			for b.Loop() {
				start := time.Now()
				resp, err := c.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				rd.Reset(resp.Body)
				first := true
				for {
					line, err := rd.ReadSlice('\n')
					if first && bytes.Contains(line, []byte(`"content":"`)) && !bytes.Contains(line, []byte(`"role"`)) {
						ttft += time.Since(start)
						first = false
					}
					if err != nil {
						break
					}
				}
				resp.Body.Close()
			}
			b.ReportMetric(float64(ttft.Nanoseconds())/float64(b.N), "ttft-ns/op")
		})
	}
}

// BenchmarkAddedLatency measures what the router adds the way the field
// notes prescribe: paired, interleaved samples (direct, router, alternating
// which goes first) at concurrency 1 against a zero-delay serve, then
// percentiles of the per-pair difference. Reported as added-p50-us etc.
//
//	go test -run '^$' -bench AddedLatency -benchtime 3000x ./tsrouter/
func BenchmarkAddedLatency(b *testing.B) {
	b.Run("non-streaming", func(b *testing.B) {
		targets := benchTargets(b, fakeserve.Options{})
		pairedLatency(b, targets, false)
	})
	b.Run("ttft", func(b *testing.B) {
		// Time until the client sees the first content delta.
		targets := benchTargets(b, fakeserve.Options{Deltas: []string{"a", "b"}})
		pairedLatency(b, targets, true)
	})
	b.Run("ttft-paced", func(b *testing.B) {
		// The serve pauses 500 µs between deltas, so the first delta
		// travels alone. On an idle VM this adds a scheduler wake-up per
		// hop to both paths; the router has two more hops than direct.
		targets := benchTargets(b, fakeserve.Options{Pace: 500 * time.Microsecond, Deltas: []string{"a", "b"}})
		pairedLatency(b, targets, true)
	})
}

func pairedLatency(b *testing.B, targets map[string]string, stream bool) {
	c := newBenchClient()
	rd := bufio.NewReaderSize(nil, 4096)
	one := func(name string) time.Duration {
		model := map[string]string{"direct": `"served-model"`, "router": `"chat"`}[name]
		body := strings.Replace(benchBody, `"chat"`, model, 1)
		if stream {
			body = strings.Replace(body, `{"model"`, `{"stream":true,"model"`, 1)
		}
		start := time.Now()
		resp, err := c.Post(targets[name]+"/v1/chat/completions", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		var d time.Duration
		if !stream {
			io.Copy(io.Discard, resp.Body)
			d = time.Since(start)
		} else {
			rd.Reset(resp.Body)
			for d == 0 {
				line, err := rd.ReadSlice('\n')
				if bytes.Contains(line, []byte(`"content":"a"`)) {
					d = time.Since(start)
				}
				if err != nil {
					b.Fatalf("stream ended before the first delta: %v", err)
				}
			}
			io.Copy(io.Discard, rd)
		}
		resp.Body.Close()
		return d
	}
	one("direct") // warm both connection pools
	one("router")
	diffs := make([]float64, 0, b.N)
	i := 0
	for b.Loop() {
		var direct, router time.Duration
		if i%2 == 0 {
			direct, router = one("direct"), one("router")
		} else {
			router, direct = one("router"), one("direct")
		}
		i++
		diffs = append(diffs, float64(router-direct)/1e3)
	}
	slices.Sort(diffs)
	pct := func(p float64) float64 { return diffs[int(p*float64(len(diffs)-1))] }
	b.ReportMetric(pct(0.5), "added-p50-us")
	b.ReportMetric(pct(0.9), "added-p90-us")
	b.ReportMetric(pct(0.99), "added-p99-us")
}
