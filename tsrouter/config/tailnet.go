package config

import (
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
)

// DefaultHostname is the router's tailnet node name: clients use
// http://anvil/v1.
const DefaultHostname = "anvil"

// DefaultCapability is the app-capability name the router reads grants
// from when [tailnet].capability is not set. It must be domain-shaped and
// outside tailscale.com (headscale rejects that domain).
const DefaultCapability = "anvil-serving.dev/cap/router"

// Tailnet is the [tailnet] table: how the router joins the tailnet and
// which peers it lets in. Unknown keys are rejected. Environment variables
// (TS_HOSTNAME, TS_STATE_DIR, TS_CONTROL_URL, TS_ADVERTISE_TAGS) override
// the node settings at start-up; the auth key comes from TS_AUTHKEY only.
type Tailnet struct {
	// Hostname is the node name (default "anvil").
	Hostname string
	// StateDir keeps the node's keys; empty means a directory under the
	// user's config dir. Containers mount a volume here.
	StateDir string
	// ControlURL is the coordination server (empty: Tailscale's; set it
	// for headscale).
	ControlURL string
	// AdvertiseTags are requested for the node (e.g. "tag:anvil").
	AdvertiseTags []string
	// Ephemeral nodes are removed by the control server when offline.
	Ephemeral bool
	// Capability names the app capability whose JSON grant values say what
	// a peer may use (default DefaultCapability).
	Capability string
	// RequireGrant denies peers that have no grant of Capability.
	RequireGrant bool
	// AllowTags / AllowUsers, when either is set, admit only tagged nodes
	// carrying one of AllowTags or untagged nodes whose user login is in
	// AllowUsers.
	AllowTags  []string
	AllowUsers []string
	// HTTPS serves :443 with the tailnet's certificate when the tailnet
	// offers one (default true).
	HTTPS bool
	// RedirectHTTP makes :80 redirect to https:// when HTTPS is served
	// (default true). /healthz is always answered on :80.
	RedirectHTTP bool
}

var (
	tailnetKeys = []string{
		"hostname", "state_dir", "control_url", "advertise_tags", "ephemeral",
		"capability", "require_grant", "allow_tags", "allow_users", "https", "redirect_http",
	}
	hostnamePattern   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	tagPattern        = regexp.MustCompile(`^tag:[A-Za-z0-9][A-Za-z0-9-]*$`)
	capabilityPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+/[A-Za-z0-9/_.~-]+$`)
)

func defaultTailnet() Tailnet {
	return Tailnet{Hostname: DefaultHostname, Capability: DefaultCapability, HTTPS: true, RedirectHTTP: true}
}

func parseTailnet(t table) Tailnet {
	t.unknown(tailnetKeys, "[tailnet]")
	tn := defaultTailnet()
	if s, ok := t.str("hostname"); ok {
		if err := CheckHostname(s); err != "" {
			t.c.report(t.path.key("hostname"), "%s", err)
		} else {
			tn.Hostname = s
		}
	}
	tn.StateDir = t.nonEmptyPath("state_dir")
	if s, ok := t.str("control_url"); ok {
		if err := CheckControlURL(s); err != "" {
			t.c.report(t.path.key("control_url"), "%s", err)
		} else {
			tn.ControlURL = s
		}
	}
	tn.AdvertiseTags = t.tags("advertise_tags")
	tn.Ephemeral, _ = t.boolean("ephemeral")
	if s, ok := t.str("capability"); ok {
		switch {
		case !capabilityPattern.MatchString(s):
			t.c.report(t.path.key("capability"), "must be domain-shaped, like %q", DefaultCapability)
		case isTailscaleDomain(s):
			t.c.report(t.path.key("capability"), "must not use the tailscale.com domain (reserved; headscale rejects it)")
		default:
			tn.Capability = s
		}
	}
	tn.RequireGrant, _ = t.boolean("require_grant")
	tn.AllowTags = t.tags("allow_tags")
	tn.AllowUsers = t.strings("allow_users")
	if v, ok := t.boolean("https"); ok {
		tn.HTTPS = v
	}
	if v, ok := t.boolean("redirect_http"); ok {
		tn.RedirectHTTP = v
	}
	return tn
}

// CheckHostname returns a problem with a node name, or "".
func CheckHostname(s string) string {
	if !hostnamePattern.MatchString(s) {
		return "must be a DNS label: letters, digits and '-', at most 63 characters"
	}
	return ""
}

// CheckControlURL returns a problem with a control server URL, or "".
func CheckControlURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "must be an http:// or https:// URL without credentials"
	}
	return ""
}

// CheckTag returns a problem with an ACL tag, or "".
func CheckTag(s string) string {
	if !tagPattern.MatchString(s) {
		return "must look like tag:name (letters, digits, '-')"
	}
	return ""
}

func isTailscaleDomain(capName string) bool {
	host, _, _ := strings.Cut(capName, "/")
	return host == "tailscale.com" || strings.HasSuffix(host, ".tailscale.com")
}

// strings reads an optional array of non-empty strings, trimmed.
func (t table) strings(key string) []string {
	out := t.stringArray(key)
	kept := out[:0]
	for i, s := range out {
		if s = strings.TrimSpace(s); s == "" {
			t.c.report(t.path.key(key).at(i), "must be a non-empty string")
			continue
		}
		kept = append(kept, s)
	}
	return kept
}

// tags reads an optional array of ACL tags.
func (t table) tags(key string) []string {
	var out []string
	for i, s := range t.strings(key) {
		if msg := CheckTag(s); msg != "" {
			t.c.report(t.path.key(key).at(i), "%s", msg)
			continue
		}
		out = append(out, s)
	}
	return out
}

// CheckLoopbackAddr returns a problem with a loopback listen address
// (127.0.0.0/8, ::1 or localhost, with a port), or "".
func CheckLoopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "must be host:port on loopback, like 127.0.0.1:8080"
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "has a bad port"
	}
	if host == "localhost" {
		return ""
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return "must be a loopback address (127.0.0.1 or [::1]): other machines reach the router over the tailnet only"
	}
	return ""
}

// Serving is the part of [tailnet] the router's tailnet service needs.
func (tn Tailnet) Serving() tsrouter.TailnetOptions {
	return tsrouter.TailnetOptions{
		Capability: tn.Capability,
		Rules: policy.TailnetRules{
			RequireGrant: tn.RequireGrant,
			AllowTags:    tn.AllowTags,
			AllowUsers:   tn.AllowUsers,
		},
		HTTPS:        tn.HTTPS,
		RedirectHTTP: tn.RedirectHTTP,
	}
}
