package tsrouter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
)

// WhoIsFunc asks the tailnet who is behind a remote address. In production
// it is (*local.Client).WhoIs of the router's own node; tests may pass a
// fake. It is the only way the router learns a caller's identity.
type WhoIsFunc func(ctx context.Context, remoteAddr string) (*apitype.WhoIsResponse, error)

// TailnetAccess configures the tailnet door.
type TailnetAccess struct {
	// WhoIs resolves callers. Required.
	WhoIs WhoIsFunc
	// Capability is the app capability carrying grants.
	Capability string
	// Rules are the operator's admission rules.
	Rules policy.TailnetRules
	// CacheTTL is how long a peer's identity and the decision on it are
	// reused for further requests from the same tailnet IP (default
	// DefaultIdentityTTL; negative disables the cache). A WhoIs costs about
	// as much as the rest of the router's work on a request.
	CacheTTL time.Duration
}

// DefaultIdentityTTL bounds how stale a cached identity can be: a grant,
// tag or node change on the control server applies to the next request
// after at most this long.
const DefaultIdentityTTL = time.Second

// maxCachedPeers bounds the identity cache; past it the cache starts over.
const maxCachedPeers = 4096

// Tailnet returns the handler for the tailnet listeners: every request is
// identified with WhoIs and authorized by policy before anything else
// (except /healthz). Unknown peers and WhoIs failures are denied.
func (h *Handler) Tailnet(a TailnetAccess) http.Handler {
	if a.WhoIs == nil {
		panic("tsrouter: TailnetAccess.WhoIs is required")
	}
	if a.CacheTTL == 0 {
		a.CacheTTL = DefaultIdentityTTL
	}
	d := &tailnetDoor{access: a, capName: tailcfg.PeerCapability(a.Capability), now: time.Now}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serve(w, r, doorTailnet, d)
	})
}

// Local returns the handler for the optional loopback listener: /healthz
// only, or, with api, the whole API behind the router token.
func (h *Handler) Local(api bool) http.Handler {
	d := doorLocal
	if api {
		d = doorLocalAPI
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serve(w, r, d, nil)
	})
}

type tailnetDoor struct {
	access  TailnetAccess
	capName tailcfg.PeerCapability
	now     func() time.Time

	mu    sync.Mutex
	cache map[netip.Addr]decision
}

// decision is a cached outcome for one peer IP: a principal or a denial.
type decision struct {
	p       *policy.Principal
	err     error
	expires time.Time
}

// principal identifies and authorizes the caller of r, from the cache when
// the same peer IP was decided on within CacheTTL. Only answers WhoIs gave
// are cached (allowed or denied); WhoIs failures are retried every time.
func (d *tailnetDoor) principal(r *http.Request) (*policy.Principal, error) {
	ap, perr := netip.ParseAddrPort(r.RemoteAddr)
	caching := d.access.CacheTTL > 0 && perr == nil
	if caching {
		d.mu.Lock()
		c, ok := d.cache[ap.Addr()]
		d.mu.Unlock()
		if ok && d.now().Before(c.expires) {
			return c.p, c.err
		}
	}
	p, err, final := d.decide(r)
	if caching && final {
		d.mu.Lock()
		if d.cache == nil || len(d.cache) >= maxCachedPeers {
			d.cache = make(map[netip.Addr]decision)
		}
		d.cache[ap.Addr()] = decision{p: p, err: err, expires: d.now().Add(d.access.CacheTTL)}
		d.mu.Unlock()
	}
	return p, err
}

// decide asks WhoIs and the policy. final is false when WhoIs itself
// failed, which must not be remembered.
func (d *tailnetDoor) decide(r *http.Request) (_ *policy.Principal, _ error, final bool) {
	who, err := d.access.WhoIs(r.Context(), r.RemoteAddr)
	if err != nil {
		return nil, fmt.Errorf("whois %s: %w", r.RemoteAddr, err), false
	}
	id, err := identityFromWhoIs(who, r.RemoteAddr, d.capName)
	if err != nil {
		return nil, err, false
	}
	p, err := policy.Authorize(d.access.Rules, id)
	if err != nil {
		// Keep who it was in the audit line even when denied.
		return nil, fmt.Errorf("%s (node %s, user %s, tags %s)", err, id.Node, id.User, strings.Join(id.Tags, ",")), true
	}
	return p, nil, true
}

var errUnknownPeer = errors.New("whois: unknown peer")

// identityFromWhoIs turns a WhoIs answer into the policy's view of a caller.
func identityFromWhoIs(who *apitype.WhoIsResponse, remoteAddr string, capName tailcfg.PeerCapability) (*policy.Identity, error) {
	if who == nil || who.Node == nil || who.UserProfile == nil {
		return nil, errUnknownPeer
	}
	id := &policy.Identity{
		Node: nodeLabel(who.Node),
		Tags: who.Node.Tags,
		User: who.UserProfile.LoginName,
	}
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		id.IP = ap.Addr()
	}
	for _, v := range who.CapMap[capName] {
		id.Grants = append(id.Grants, json.RawMessage(v))
	}
	return id, nil
}

// nodeLabel is the node's short MagicDNS name ("mini" of
// "mini.tail1234.ts.net.").
func nodeLabel(n *tailcfg.Node) string {
	if n.ComputedName != "" {
		return n.ComputedName
	}
	name, _, _ := strings.Cut(n.Name, ".")
	return name
}
