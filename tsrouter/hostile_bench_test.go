package tsrouter_test

import (
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// BenchmarkTricklingCallers: N connections send a request body one byte
// every 100 ms (holding no slot while they do); each iteration is one
// ordinary chat request from another caller. Reported: that caller's
// latency (p50, p99) and the heap the tricklers cost.
//
//	go test -run '^$' -bench TricklingCallers -benchtime 200x ./tsrouter/
func BenchmarkTricklingCallers(b *testing.B) {
	for _, n := range []int{64, 256, 1000} {
		b.Run(fmt.Sprintf("tricklers=%d", n), func(b *testing.B) {
			_, url := startFake(b, fakeserve.Options{})
			h := newHandler(b, oneTier(url, ""), routerOpts{slots: 64}, nil)
			srv := &http.Server{Handler: h}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go srv.Serve(ln)
			b.Cleanup(func() { srv.Close() })
			addr := ln.Addr().String()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			stop := make(chan struct{})
			for range n {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n{", 32<<20)
				go func() {
					defer c.Close()
					tick := time.NewTicker(100 * time.Millisecond)
					defer tick.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tick.C:
							c.Write([]byte(" "))
						}
					}
				}()
			}
			b.Cleanup(func() { close(stop) })
			time.Sleep(200 * time.Millisecond)
			client := &http.Client{}
			body := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				resp, err := client.Post("http://"+addr+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("an ordinary caller got %d while %d trickle", resp.StatusCode, n)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			var during runtime.MemStats
			runtime.ReadMemStats(&during)
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(int64(during.HeapInuse)-int64(before.HeapInuse))/float64(1<<20), "trickler-heap-MiB")
		})
	}
}
