package tsrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// DefaultDrainTimeout is how long in-flight requests (streams included) may
// run after a shutdown signal before their connections are closed.
const DefaultDrainTimeout = 20 * time.Second

// CheckLoopback accepts only loopback listen addresses (127.0.0.0/8, ::1,
// "localhost"): the dev listener has no tailnet identity in front of it, so
// it must never be reachable from another machine.
func CheckLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w (want 127.0.0.1:PORT)", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("listen address %q: bad port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q is not a loopback address: the dev listener serves 127.0.0.1 or [::1] only; other machines reach the router over the tailnet", addr)
	}
	return nil
}

// ListenLoopback checks addr and listens on it.
func ListenLoopback(addr string) (net.Listener, error) {
	if err := CheckLoopback(addr); err != nil {
		return nil, err
	}
	return net.Listen("tcp", addr)
}

// NewHTTPServer returns the http.Server settings every listener uses: bounded
// header reads, a 120 s keep-alive idle timeout, and no write timeout (a
// stream may legitimately run for minutes).
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		// OPTIONS * goes to the router like any request (authenticated,
		// audited, 404), not to net/http's silent 200.
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// Served is one listener and the server for it.
type Served struct {
	// Name says what it is in logs ("tailnet :80", "local 127.0.0.1:8080").
	Name     string
	Server   *http.Server
	Listener net.Listener
}

// Serve serves srv on ln until ctx is done, then drains (see ServeAll).
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, log *slog.Logger) error {
	return ServeAll(ctx, drain, log, Served{Name: ln.Addr().String(), Server: srv, Listener: ln})
}

// ServeAll serves every listener until ctx is done or one of them fails,
// then stops accepting on all, lets in-flight requests (streams included)
// finish for up to drain, and closes what remains — which cancels their
// upstream requests.
func ServeAll(ctx context.Context, drain time.Duration, log *slog.Logger, all ...Served) error {
	errc := make(chan error, len(all))
	for _, s := range all {
		go func() {
			err := s.Server.Serve(s.Listener)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			} else if err != nil {
				err = fmt.Errorf("%s: %w", s.Name, err)
			}
			errc <- err
		}()
	}
	var first error
	select {
	case first = <-errc:
		if first == nil {
			first = errors.New("a listener stopped unexpectedly")
		}
		log.Error("listener failed; shutting down", "err", first)
	case <-ctx.Done():
		log.Info("shutting down: draining in-flight requests", "timeout", drain.String())
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan struct{})
	for _, s := range all {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := s.Server.Shutdown(sctx); errors.Is(err, context.DeadlineExceeded) {
				log.Warn("drain timeout reached; closing remaining connections", "listener", s.Name)
				s.Server.Close()
			}
		}()
	}
	for range all {
		<-done
	}
	return first
}
