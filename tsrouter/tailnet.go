package tsrouter

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

// TailnetServing is everything the tailnet service needs besides the node.
type TailnetServing struct {
	// Handler is the router's handler.
	Handler *Handler
	// Tailnet says who may call and how :80 and :443 are served.
	Tailnet TailnetOptions
	// LocalListen / LocalAPI are [server].local_listen / local_api.
	LocalListen string
	LocalAPI    bool
	// Drain bounds the graceful shutdown.
	Drain  time.Duration
	Logger *slog.Logger
}

// TailnetOptions are the tailnet settings of the service (the router file's
// [tailnet] table, minus what the node itself needs).
type TailnetOptions struct {
	// Capability names the app capability whose JSON grant values say
	// what a peer may use.
	Capability string
	// Rules admit peers by grant, tag or user before anything else.
	Rules policy.TailnetRules
	// HTTPS serves :443 with the tailnet's certificate when it offers one.
	HTTPS bool
	// RedirectHTTP makes :80 redirect to https:// once HTTPS is served
	// (/healthz is always answered on :80).
	RedirectHTTP bool
}

// TailnetService is the router's listeners on its node (and loopback),
// bound and ready to serve.
type TailnetService struct {
	node     *Node
	s        TailnetServing
	log      *slog.Logger
	served   []Served
	domain   string      // certificate domain, "" without HTTPS
	redirect atomic.Bool // :80 redirects once a certificate is in hand
}

// ListenTailnet binds the router's listeners: tailnet :80, tailnet :443 when
// the tailnet offers HTTPS certificates, and the optional loopback listener.
// Nothing listens on a non-loopback host address.
func ListenTailnet(node *Node, s TailnetServing) (*TailnetService, error) {
	ts := &TailnetService{node: node, s: s, log: s.Logger}
	// Guardrail services on other tailnet nodes are reached through it.
	s.Handler.upstream.useNode(node)
	if ts.log == nil {
		ts.log = slog.Default()
	}
	api := s.Handler.Tailnet(TailnetAccess{
		WhoIs:      node.WhoIs,
		Capability: s.Tailnet.Capability,
		Rules:      s.Tailnet.Rules,
	})
	if s.Tailnet.HTTPS {
		if d := node.CertDomains(); len(d) > 0 {
			ts.domain = d[0]
		}
	}
	fail := func(err error) (*TailnetService, error) {
		for _, sv := range ts.served {
			sv.Listener.Close()
		}
		return nil, err
	}
	if ts.domain != "" {
		ln, err := node.ListenTLS(":443")
		if err != nil {
			return fail(err)
		}
		ts.served = append(ts.served, Served{Name: "tailnet :443", Server: NewHTTPServer(api, ts.log), Listener: ln})
	}
	ln, err := node.Listen(":80")
	if err != nil {
		return fail(err)
	}
	ts.served = append(ts.served, Served{Name: "tailnet :80", Server: NewHTTPServer(ts.plainHandler(api), ts.log), Listener: ln})
	ts.log.Info("serving on the tailnet", "url", "http://"+node.hostLabel()+"/v1")
	if s.LocalListen != "" {
		lln, err := ListenLoopback(s.LocalListen)
		if err != nil {
			return fail(err)
		}
		ts.served = append(ts.served, Served{Name: "local " + s.LocalListen, Server: NewHTTPServer(s.Handler.Local(s.LocalAPI), ts.log), Listener: lln})
		ts.log.Info("serving on loopback", "addr", lln.Addr().String(), "api", s.LocalAPI)
	}
	return ts, nil
}

// Serve serves until ctx is done, then drains and returns.
func (ts *TailnetService) Serve(ctx context.Context) error {
	if ts.domain != "" {
		go ts.awaitCertificate(ctx)
	}
	return ServeAll(ctx, ts.s.Drain, ts.log, ts.served...)
}

// plainHandler serves :80: the API itself until HTTPS is really available
// (a certificate fetched), then — if configured — a redirect to it.
// Redirecting on the mere promise of a certificate would send clients to a
// TLS listener that cannot complete a handshake.
func (ts *TailnetService) plainHandler(api http.Handler) http.Handler {
	if ts.domain == "" || !ts.s.Tailnet.RedirectHTTP {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Liveness keeps working over plain HTTP.
		if !ts.redirect.Load() || r.URL.Path == "/healthz" {
			api.ServeHTTP(w, r)
			return
		}
		// 308 keeps the method and body: a POST stays a POST.
		http.Redirect(w, r, "https://"+ts.domain+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// awaitCertificate fetches the node's certificate, retrying with backoff,
// and turns on the :80 redirect once it has one.
func (ts *TailnetService) awaitCertificate(ctx context.Context) {
	backoff := 30 * time.Second
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := ts.node.fetchCert(cctx, ts.domain)
		cancel()
		if err == nil {
			ts.redirect.Store(ts.s.Tailnet.RedirectHTTP)
			ts.log.Info("HTTPS ready on the tailnet", "url", "https://"+ts.domain+"/v1", "redirect_http", ts.s.Tailnet.RedirectHTTP)
			return
		}
		ts.log.Warn("tailnet HTTPS certificate not available yet; serving plain HTTP on :80", "domain", ts.domain, "err", err, "retry_in", backoff.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Minute)
	}
}

// hostLabel is the node's short name for log lines.
func (n *Node) hostLabel() string {
	if n.srv != nil && n.srv.Hostname != "" {
		return n.srv.Hostname
	}
	return n.Name
}
