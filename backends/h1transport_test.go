package backends

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// countingServer is an httptest server on 127.0.0.1 that counts the
// connections it accepted and the requests it served.
type countingServer struct {
	*httptest.Server
	conns    atomic.Int64
	requests atomic.Int64
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	cs := &countingServer{}
	cs.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.requests.Add(1)
		h(w, r)
	}))
	cs.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			cs.conns.Add(1)
		}
	}
	cs.Start()
	t.Cleanup(cs.Close)
	return cs
}

func newTestH1(t *testing.T) *http.Client {
	t.Helper()
	tr := newH1Transport(16, newTransport(4))
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: noRedirects}
}

func postBody(t *testing.T, c *http.Client, ctx context.Context, url, body string) (int, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestH1TransportReusesConnections(t *testing.T) {
	cases := []struct {
		name      string
		handler   http.HandlerFunc
		wantConns int64
	}{
		{"content-length replies", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		}, 1},
		{"chunked replies", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			for _, c := range b {
				w.Write([]byte{c})
				w.(http.Flusher).Flush()
			}
		}, 1},
		{"empty replies", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}, 1},
		{"serve says Connection: close", func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Connection", "close")
			w.Write(b)
		}, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newCountingServer(t, tc.handler)
			c := newTestH1(t)
			for i := range 5 {
				body := fmt.Sprintf(`{"n":%d}`, i)
				status, got, err := postBody(t, c, t.Context(), srv.URL, body)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if status == http.StatusNoContent {
					got = body
				}
				if got != body {
					t.Fatalf("request %d: body %q, want %q", i, got, body)
				}
			}
			if n := srv.conns.Load(); n != tc.wantConns {
				t.Errorf("serve accepted %d connections for 5 sequential requests, want %d", n, tc.wantConns)
			}
		})
	}
}

// A serve that closes keep-alive connections while they are idle (uvicorn
// does after 5 s) must not fail the next request, and must not see it twice.
func TestH1TransportStaleConnection(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
	c := newTestH1(t)
	if _, _, err := postBody(t, c, t.Context(), srv.URL, "one"); err != nil {
		t.Fatal(err)
	}
	srv.CloseClientConnections() // the serve drops its idle keep-alive conns
	deadline := time.Now().Add(2 * time.Second)
	for srv.conns.Load() == 1 && time.Now().Before(deadline) {
		status, got, err := postBody(t, c, t.Context(), srv.URL, "two")
		if err != nil || status != 200 || got != "two" {
			t.Fatalf("request after the serve closed the idle connection: %d %q %v", status, got, err)
		}
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("serve handled %d requests, want 2 (no duplicate)", n)
	}
}

// rawServe accepts connections on 127.0.0.1 and hands each, with its
// sequence number, to serve.
func rawServe(t *testing.T, serve func(n int64, nc net.Conn)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	accepted = new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepted.Add(1)
			go func() {
				defer nc.Close()
				serve(n, nc)
			}()
		}
	}()
	return ln.Addr().String(), accepted
}

// echoOnce answers one request on nc with its body.
func echoOnce(nc net.Conn, requests *atomic.Int64) {
	req, err := http.ReadRequest(bufioReader(nc))
	if err != nil {
		return
	}
	requests.Add(1)
	b, _ := io.ReadAll(req.Body)
	fmt.Fprintf(nc, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
}

// resetOnWrite is a pooled connection whose peer reset it after the idle
// check: the write fails. (Not a syscall.Conn, so the check passes.)
type resetOnWrite struct{ net.Conn }

func (resetOnWrite) Write([]byte) (int, error) { return 0, syscall.ECONNRESET }

// TestH1TransportRetry: only a request that could not be written is sent
// again; one the serve received is never resent, even if the connection
// then dies without an answer — the serve may be generating for it.
func TestH1TransportRetry(t *testing.T) {
	t.Run("write failed on a pooled connection: retried once", func(t *testing.T) {
		var requests atomic.Int64
		addr, accepted := rawServe(t, func(_ int64, nc net.Conn) { echoOnce(nc, &requests) })
		tr := newH1Transport(4, newTransport(4))
		t.Cleanup(tr.CloseIdleConnections)
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		dead := resetOnWrite{a}
		tr.put(&h1Conn{nc: dead, br: bufioReader(dead), bw: bufioWriter(dead), addr: addr})
		status, got, err := postBody(t, &http.Client{Transport: tr}, t.Context(), "http://"+addr+"/x", "replayed body")
		if err != nil || status != 200 || got != "replayed body" {
			t.Fatalf("got %d %q %v, want 200 and the body on a fresh connection", status, got, err)
		}
		if n, r := accepted.Load(), requests.Load(); n != 1 || r != 1 {
			t.Errorf("%d connections, %d requests; want 1 and 1", n, r)
		}
	})
	t.Run("written, then the connection closed: not resent", func(t *testing.T) {
		var requests atomic.Int64
		addr, accepted := rawServe(t, func(n int64, nc net.Conn) {
			if n == 1 {
				// Take the request, then die without answering.
				if _, err := http.ReadRequest(bufioReader(nc)); err == nil {
					requests.Add(1)
				}
				return
			}
			echoOnce(nc, &requests)
		})
		tr := newH1Transport(4, newTransport(4))
		t.Cleanup(tr.CloseIdleConnections)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		tr.put(&h1Conn{nc: nc, br: bufioReader(nc), bw: bufioWriter(nc), addr: addr})
		_, _, err = postBody(t, &http.Client{Transport: tr}, t.Context(), "http://"+addr+"/x", "once")
		if err == nil {
			t.Fatal("want an error: the serve took the request and closed without an answer")
		}
		if n, r := accepted.Load(), requests.Load(); n != 1 || r != 1 {
			t.Errorf("%d connections, %d requests; want 1 and 1 (no resend)", n, r)
		}
	})
}

// A serve that sends bytes past the framed reply leaves the connection out
// of step; it must not carry the next request.
func TestH1TransportDropsConnectionsWithStrayBytes(t *testing.T) {
	var requests atomic.Int64
	addr, accepted := rawServe(t, func(_ int64, nc net.Conn) {
		br := bufioReader(nc)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			requests.Add(1)
			io.Copy(io.Discard, req.Body)
			// The reply, and in the same write five bytes of nothing.
			fmt.Fprint(nc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokjunk!")
		}
	})
	c := newTestH1(t)
	for i := range 3 {
		status, got, err := postBody(t, c, t.Context(), "http://"+addr+"/x", "q")
		if err != nil || status != 200 || got != "ok" {
			t.Fatalf("request %d: %d %q %v", i, status, got, err)
		}
	}
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests, want 3: a connection with stray bytes was reused", n)
	}
}

// Abandoning a stream must close its connection — that is how a serve
// learns to stop generating — and a cancelled context must unblock a
// request waiting for headers.
func TestH1TransportAbandonAndCancel(t *testing.T) {
	gone := make(chan struct{}, 4)
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			<-r.Context().Done()
			gone <- struct{}{}
			return
		}
		for {
			if _, err := w.Write([]byte("data: x\n\n")); err != nil {
				gone <- struct{}{}
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				gone <- struct{}{}
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	c := newTestH1(t)
	t.Run("body closed early", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/stream", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		if _, err := resp.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatal("serve still streaming 5 s after the body was closed")
		}
	})
	t.Run("context cancelled before headers", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/hang", nil)
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Do(req)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("cancel took %v", d)
		}
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatal("serve never saw the cancelled request go away")
		}
	})
	t.Run("connections are fresh afterwards", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/stream", nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request after abandon/cancel: %v", err)
		}
		resp.Body.Close()
		<-gone
	})
}

// Many goroutines share one pool; run with -race.
func TestH1TransportConcurrent(t *testing.T) {
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(bytes.ToUpper(b))
	})
	c := newTestH1(t)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				body := fmt.Sprintf("g%d-%d", g, i)
				_, got, err := postBody(t, c, t.Context(), srv.URL, body)
				if err == nil && got != strings.ToUpper(body) {
					err = fmt.Errorf("body %q for %q", got, body)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.conns.Load(); n > 32 {
		t.Errorf("%d connections for 32 concurrent callers; pooling is not working", n)
	}
}

func bufioReader(nc net.Conn) *bufio.Reader { return bufio.NewReaderSize(nc, h1ReadBuffer) }
func bufioWriter(nc net.Conn) *bufio.Writer { return bufio.NewWriterSize(nc, h1WriteBuffer) }

// BenchmarkTransport compares the router's serve transport with net/http's
// on the same loopback server: a small JSON request and reply, one caller
// and many. CPU per request is what limits a busy router.
//
//	go test -run '^$' -bench Transport -benchmem ./backends/
func BenchmarkTransport(b *testing.B) {
	reply := []byte(`{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}]}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	}))
	defer srv.Close()
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	transports := []struct {
		name string
		rt   http.RoundTripper
	}{
		{"net-http", newTransport(256)},
		{"h1", newH1Transport(256, newTransport(4))},
	}
	for _, tr := range transports {
		c := &http.Client{Transport: tr.rt}
		do := func() error {
			req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
			req.Header = http.Header{"Content-Type": {"application/json"}}
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return err
		}
		b.Run(tr.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b)()
			for b.Loop() {
				if err := do(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tr.name+"/parallel", func(b *testing.B) {
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

// A buffered reply read through Complete must hand its connection back:
// sequential requests to a serve share one connection, whether the serve
// sends a Content-Length or chunks.
func TestCompleteReusesTheConnection(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("Content-Type", "application/json")
				if chunked {
					w.Write([]byte(`{"choices":`))
					w.(http.Flusher).Flush()
				} else {
					w.Header().Set("Content-Length", "24")
					w.Write([]byte(`{"choices":`))
				}
				w.Write([]byte(`[],"id":"x1"}`))
			})
			cfg, err := config.Parse("t.toml", []byte(`
[[router.tiers]]
id = "t"
base_url = "`+srv.URL+`"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "T_KEY"
[router.model_routes]
chat = "t"
`))
			if err != nil {
				t.Fatal(err)
			}
			set, err := New(cfg, Options{LookupEnv: func(string) string { return "" }})
			if err != nil {
				t.Fatal(err)
			}
			defer set.CloseIdle()
			tier, _ := set.Lookup("chat")
			for i := range 4 {
				reply, err := tier.Complete(t.Context(), []byte(`{"model":"m"}`))
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if string(reply.Body) != `{"choices":[],"id":"x1"}` {
					t.Fatalf("body %q", reply.Body)
				}
			}
			if n := srv.conns.Load(); n != 1 {
				t.Errorf("%d connections for 4 sequential replies, want 1", n)
			}
		})
	}
}

// Idle connections are closed once idle for the timeout, the oldest of a
// burst included (reuse takes the newest, so they would otherwise sit in
// CLOSE_WAIT after the serve drops them), and the pool works afterwards.
func TestH1TransportClosesIdleConnections(t *testing.T) {
	var closed atomic.Int64
	release := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("ok"))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	tr := newH1Transport(16, newTransport(4))
	tr.idleTimeout = 100 * time.Millisecond
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	// A burst of three concurrent requests: three connections.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if _, _, err := postBody(t, c, t.Context(), srv.URL, "x"); err != nil {
				t.Error(err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for closed.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := closed.Load(); n != 3 {
		t.Fatalf("%d of 3 idle connections closed after the idle timeout", n)
	}
	tr.mu.Lock()
	pooled, sweeping := 0, tr.sweep != nil
	for _, l := range tr.idle {
		pooled += len(l)
	}
	tr.mu.Unlock()
	if pooled != 0 || sweeping {
		t.Errorf("pool holds %d connections, sweep timer running %v; want none", pooled, sweeping)
	}
	if _, got, err := postBody(t, c, t.Context(), srv.URL, "x"); err != nil || got != "ok" {
		t.Fatalf("request after the sweep: %q %v", got, err)
	}
}
