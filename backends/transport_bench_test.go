package backends

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTransport runs one request loop through both upstream
// transports against the same loopback serve: a small JSON completion, and
// a short SSE stream (eight events and [DONE], each flushed). One caller,
// and eight per core. CPU per request (client and serve together) is what
// limits a busy router; compare with
//
//	go test -run '^$' -bench Transport -benchmem -count 6 ./backends/ > out.txt
//	benchstat -col /transport out.txt
func BenchmarkTransport(b *testing.B) {
	reply := []byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}]}`)
	event := []byte(`data: {"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok"},"finish_reason":null}]}` + "\n\n")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/sse" {
			w.Header().Set("Content-Type", "text/event-stream")
			f := w.(http.Flusher)
			for range 8 {
				w.Write(event)
				f.Flush()
			}
			w.Write([]byte("data: [DONE]\n\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	}))
	defer srv.Close()
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	for _, path := range []string{"json", "sse"} {
		for _, k := range transportKinds {
			c := &http.Client{Transport: k.new(b, 90*time.Second), CheckRedirect: noRedirects}
			url := srv.URL + "/" + path
			do := func() error {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
				req.Header = http.Header{"Content-Type": {"application/json"}}
				resp, err := c.Do(req)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return err
			}
			b.Run("body="+path+"/callers=1/transport="+k.name, func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				for b.Loop() {
					if err := do(); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("body="+path+"/callers=8xP/transport="+k.name, func(b *testing.B) {
				b.ReportAllocs()
				defer reportCPU(b)()
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := do(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			c.CloseIdleConnections()
		}
	}
}

// reportCPU adds the process's CPU time per operation (user + system, client
// and server together) to a benchmark: on a shared machine wall time per
// request swings with the neighbours, CPU per request much less.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
