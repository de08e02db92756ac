package fakeserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// LoopbackAddr checks that addr ("host:port") names a loopback address and
// returns it in a form net.Listen accepts. An empty host and "localhost" mean
// 127.0.0.1 (so ":0" picks a free loopback port); any other host must be a
// loopback IP literal (127.0.0.0/8 or ::1). Host names are never resolved.
func LoopbackAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("fakeserve: bad listen address %q: %w", addr, err)
	}
	switch strings.ToLower(host) {
	case "", "localhost":
		host = "127.0.0.1"
	default:
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return "", fmt.Errorf("fakeserve: refusing to listen on %q: the host must be a loopback address (127.0.0.1, ::1 or localhost)", addr)
		}
	}
	return net.JoinHostPort(host, port), nil
}

// Start listens on the loopback address addr (see LoopbackAddr; "127.0.0.1:0"
// or ":0" picks a free port) and serves a new Server built from opts in a
// goroutine. It returns the server, its base URL ("http://127.0.0.1:PORT")
// and a stop function that cancels the requests in flight, shuts the server
// down and waits for it; stop is idempotent. The server also stops when ctx
// is done, and request contexts are derived from ctx.
func Start(ctx context.Context, addr string, opts Options) (*Server, string, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, "", nil, err
	}
	laddr, err := LoopbackAddr(addr)
	if err != nil {
		return nil, "", nil, err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", laddr)
	if err != nil {
		return nil, "", nil, fmt.Errorf("fakeserve: listen: %w", err)
	}
	s := New(opts)
	baseCtx, cancelBase := context.WithCancel(ctx)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			if logf := s.plan.Load().opts.Logf; logf != nil {
				logf("fakeserve: serve: %v", err)
			}
		}
	}()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancelBase() // ends hangs, waits and streams in flight
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if srv.Shutdown(sctx) != nil {
				srv.Close()
			}
			<-served
		})
	}
	go func() {
		select {
		case <-ctx.Done():
			stop()
		case <-served:
		}
	}()
	return s, "http://" + ln.Addr().String(), stop, nil
}

// UnusedLoopbackAddr returns a "127.0.0.1:PORT" address nothing listens on
// (it binds a free port and closes it), for connection-refused tests.
func UnusedLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("fakeserve: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("fakeserve: %w", err)
	}
	return addr, nil
}
