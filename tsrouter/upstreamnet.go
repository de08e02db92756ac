package tsrouter

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"tailscale.com/net/tsaddr"
)

// The router joins the tailnet in userspace (tsnet): the host it runs on
// usually has no route to other tailnet nodes. A guardrail webhook or
// Presidio analyzer on another tailnet node is therefore dialled through
// the router's own node, and everything else (loopback, the host's LAN)
// through the host network.

// dialFunc dials like net.Dialer.DialContext.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// upstreamNet routes the connections of the router's own HTTP calls to
// operator services (guardrail providers).
type upstreamNet struct {
	// tailnet dials through the node (nil until the node is up).
	tailnet atomic.Pointer[dialFunc]
	// domain is the tailnet's MagicDNS domain ("tail1234.ts.net"), from
	// the node's name; "" until the node is up.
	domain atomic.Pointer[string]
	host   net.Dialer
}

// useNode sends tailnet destinations through node from now on.
func (u *upstreamNet) useNode(node *Node) {
	d := dialFunc(node.srv.Dial)
	u.tailnet.Store(&d)
	name := strings.ToLower(strings.TrimSuffix(node.Name, "."))
	if _, domain, ok := strings.Cut(name, "."); ok {
		u.domain.Store(&domain)
	}
}

// tailnetHost reports whether host (a name or an IP, no port) is surely
// a tailnet destination: a Tailscale IP (100.64.0.0/10,
// fd7a:115c:a1e0::/48) or a name in the tailnet's MagicDNS domain.
func (u *upstreamNet) tailnetHost(host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return tsaddr.IsTailscaleIP(ip.Unmap())
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if d := u.domain.Load(); d != nil && *d != "" && strings.HasSuffix(host, "."+*d) {
		return true
	}
	return strings.HasSuffix(host, ".ts.net")
}

// dial is the transport's DialContext. Only a destination that is surely
// on the tailnet goes through the node: a bare name ("hooks") is dialled
// on the host, never retried on the tailnet, where another node of that
// name would get the text and the hook's secret.
func (u *upstreamNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if host, _, err := net.SplitHostPort(addr); err == nil && u.tailnetHost(host) {
		if tn := u.tailnet.Load(); tn != nil {
			return (*tn)(ctx, network, addr)
		}
	}
	return u.host.DialContext(ctx, network, addr)
}

// transport is an HTTP transport over dial. No proxy from the
// environment: a guardrail's text goes only where the operator said.
func (u *upstreamNet) transport() *http.Transport {
	return &http.Transport{
		DialContext:           u.dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
