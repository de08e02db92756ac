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

// BenchmarkTailnetPath compares the same router reached over the dev
// listener (plain loopback TCP) and over the tailnet (a client tsnet node
// to the router's node, both in this process, DERP on loopback): paired,
// interleaved samples; added-p50-us is the tailnet's extra cost.
//
//	go test -run '^$' -bench TailnetPath -benchtime 2000x ./tsrouter/
func BenchmarkTailnetPath(b *testing.B) {
	tn := newTestTailnet(b)
	_, url := startFake(b, fakeserve.Options{})
	dev, tailnetClient := tn.routerBoth(b, routerConfig(url, ""))
	devClient := newBenchClient()
	one := func(c *http.Client, base string) time.Duration {
		start := time.Now()
		resp, err := c.Post(base+"/v1/chat/completions", "application/json", strings.NewReader(benchBody))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	one(devClient, dev)
	one(tailnetClient, "http://anvil")
	var diffs, tail []float64
	for b.Loop() {
		d := one(devClient, dev)
		tt := one(tailnetClient, "http://anvil")
		diffs = append(diffs, float64(tt-d)/1e3)
		tail = append(tail, float64(tt)/1e3)
	}
	slices.Sort(diffs)
	slices.Sort(tail)
	pct := func(s []float64, p float64) float64 { return s[int(p*float64(len(s)-1))] }
	b.ReportMetric(pct(tail, 0.5), "tailnet-p50-us")
	b.ReportMetric(pct(diffs, 0.5), "added-p50-us")
	b.ReportMetric(pct(diffs, 0.99), "added-p99-us")
}

// BenchmarkTailnetStream streams 20 deltas paced 5 ms apart through the
// dev listener and through the tailnet, and reports time to the first
// content delta and how far the gaps between deltas exceed the serve's
// pace (timer slack of the serve included, so compare the two doors).
func BenchmarkTailnetStream(b *testing.B) {
	tn := newTestTailnet(b)
	deltas := make([]string, 20)
	for i := range deltas {
		deltas[i] = "tok "
	}
	const pace = 5 * time.Millisecond
	_, url := startFake(b, fakeserve.Options{Deltas: deltas, Pace: pace})
	dev, tc := tn.routerBoth(b, routerConfig(url, ""))
	body := strings.Replace(benchBody, `{"model"`, `{"stream":true,"model"`, 1)
	for _, door := range []struct {
		name string
		c    *http.Client
		base string
	}{{"dev", newBenchClient(), dev}, {"tailnet", tc, "http://anvil"}} {
		b.Run(door.name, func(b *testing.B) {
			var ttfts, gaps []float64
			for b.Loop() {
				start := time.Now()
				resp, err := door.c.Post(door.base+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				rd := bufio.NewReader(resp.Body)
				var last time.Time
				for {
					line, err := rd.ReadSlice('\n')
					if bytes.Contains(line, []byte(`"content":"tok "`)) {
						now := time.Now()
						if last.IsZero() {
							ttfts = append(ttfts, float64(now.Sub(start))/1e3)
						} else {
							gaps = append(gaps, float64(now.Sub(last)-pace)/1e3)
						}
						last = now
					}
					if err != nil {
						break
					}
				}
				resp.Body.Close()
			}
			slices.Sort(ttfts)
			slices.Sort(gaps)
			pct := func(s []float64, p float64) float64 { return s[int(p*float64(len(s)-1))] }
			b.ReportMetric(pct(ttfts, 0.5), "ttft-p50-us")
			b.ReportMetric(pct(gaps, 0.5), "gap-over-pace-p50-us")
			b.ReportMetric(pct(gaps, 0.99), "gap-over-pace-p99-us")
		})
	}
}

// BenchmarkWhoIs is the per-request identity lookup on the router's node
// (an in-memory LocalAPI call), measured to decide whether it needs a
// cache.
func BenchmarkWhoIs(b *testing.B) {
	tn := newTestTailnet(b)
	_, url := startFake(b, fakeserve.Options{})
	r := tn.routerHandler(b, routerConfig(url, ""), "")
	client := tn.clientNode(b, "mini", "tag:mini")
	ip4, _ := client.TailscaleIPs()
	addr := ip4.String() + ":40000"
	b.ReportAllocs()
	for b.Loop() {
		who, err := r.node.WhoIs(b.Context(), addr)
		if err != nil || who.Node == nil {
			b.Fatalf("whois: %v", err)
		}
	}
}
