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
// counts the router as that site's origin — Origin equals Host — and
// sends the caller's tailnet identity (WhoIs) or UI session along, so the
// page could read the admin API and pass the UI's origin check. What it
// cannot choose is the Host header: the attacker's name. So a browser's
// request (it sends Origin or Sec-Fetch-Site, or carries a cookie) for
// the admin API or the UI must name this router: an IP address, a dotless
// name (localhost, the MagicDNS short name: no public DNS answers those),
// the node's MagicDNS name, or a name under Tailscale's ts.net.

// SetTailnetName records the node's MagicDNS name (no trailing dot) once
// the node is up, so browsers may use it as the Host.
func (h *Handler) SetTailnetName(name string) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	h.tailnetName.Store(&name)
}

// browserHostTrusted reports whether r, if a browser sent it, names this
// router in its Host. Requests from other clients (curl, the SDKs) carry
// neither browser header nor cookie and are not judged.
func (h *Handler) browserHostTrusted(r *http.Request) bool {
	if !webui.FromBrowser(r) && r.Header.Get("Cookie") == "" {
		return true
	}
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
