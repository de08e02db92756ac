package backends

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// TestH1TransportRetry: a request that could not be written to a pooled
// connection is sent once more on a fresh one. (That one the serve received
// is never resent is in the transport table.)
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
}

func bufioReader(nc net.Conn) *bufio.Reader { return bufio.NewReaderSize(nc, h1ReadBuffer) }
func bufioWriter(nc net.Conn) *bufio.Writer { return bufio.NewWriterSize(nc, h1WriteBuffer) }

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
			cfg := Config{
				Tiers: []TierConfig{{
					ID: "t", BaseURL: srv.URL, Dialect: "openai", ContextLimit: 4096,
					Privacy: "local", ToolSupport: true, AuthEnv: "T_KEY",
				}},
				Routes: []Route{{Alias: "chat", TierID: "t"}},
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

// TestH1TransportPoolEmptiesWhenIdle: once every pooled connection has
// been closed for idleness, the pool is empty and its sweep timer stopped
// (no timer runs for an idle router). The closing itself is in the
// transport table.
func TestH1TransportPoolEmptiesWhenIdle(t *testing.T) {
	release := make(chan struct{})
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("ok"))
	})
	tr := newH1Transport(16, newTransport(4))
	tr.idleTimeout = 100 * time.Millisecond
	t.Cleanup(tr.CloseIdleConnections)
	burst(t, &http.Client{Transport: tr}, srv.URL, release)
	pooled, sweeping := 0, true
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		tr.mu.Lock()
		pooled, sweeping = 0, tr.sweep != nil
		for _, l := range tr.idle {
			pooled += len(l)
		}
		tr.mu.Unlock()
		if pooled == 0 && !sweeping {
			return
		}
	}
	t.Errorf("pool holds %d connections, sweep timer running %v; want none", pooled, sweeping)
}
