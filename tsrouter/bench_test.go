package tsrouter_test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
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
	router := startRouterB(b, oneTier(url, ""))
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
