package tsrouter

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/anvil-serving/anvil-router/tsrouter/webui"
)

// DNS rebinding: a page on a site the attacker controls can point its own
// name at this router's tailnet or loopback address. The browser then
// counts the router as that site's origin — Origin equals Host, or no
// Origin at all on a same-origin GET, and over plain HTTP no Sec-Fetch
// headers either — and the request carries what the browser brings by
// itself: the caller's tailnet identity (WhoIs), loopback under
// [admin.auth] none. The page could read the admin API, the UI and the
// decision log, and run inference as that caller. What it cannot choose
// is the Host header: the attacker's name; and it cannot send a secret it
// does not have. So every request that no secret authenticated (the
// router token, an API key, the admin credential) must name this router:
// an IP address, a dotless name (localhost, the MagicDNS short name: no
// public DNS answers those), the node's MagicDNS name, or a name under
// Tailscale's ts.net. A client that reaches the router under another
// DNS name must send the router token or an API key. A browser's
// request for the admin API or the UI must name this router in any case.

// SetTailnetName records the node's MagicDNS name (no trailing dot) once
// the node is up, so browsers may use it as the Host.
func (h *Handler) SetTailnetName(name string) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	h.tailnetName.Store(&name)
}

// fromBrowser: r came from a browser (fetch metadata, Origin, or a
// cookie, which only browsers keep for the router).
func fromBrowser(r *http.Request) bool {
	return webui.FromBrowser(r) || r.Header.Get("Cookie") != ""
}

// hostTrusted reports whether r's Host names this router.
func (h *Handler) hostTrusted(r *http.Request) bool {
	name := r.Host
	if host, _, err := net.SplitHostPort(name); err == nil {
		name = host
	}
	name = strings.ToLower(strings.TrimSuffix(strings.Trim(name, "[]"), "."))
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if name != "" && !strings.Contains(name, ".") {
		return true
	}
	if n := h.tailnetName.Load(); n != nil && *n != "" && name == *n {
		return true
	}
	return strings.HasSuffix(name, ".ts.net")
}
