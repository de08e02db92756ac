package tsrouter_test

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"tailscale.com/net/tsaddr"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
)

// TestWebUITailnetIdentity: on the tailnet the WhoIs identity is the
// login. Over a real tsnet tailnet, a node whose grant says admin sees
// the admin pages and API; a node with an ordinary grant sees My usage
// only and gets 403 on the admin pages and API. No token, no cookie.
// A browser-style write needs the page's CSRF token and the router's
// origin even though the identity alone authorizes it.
func TestWebUITailnetIdentity(t *testing.T) {
	tn := newTestTailnet(t)
	_, url := startFake(t, fakeserve.Options{})
	r := tn.routerHandler(t, routerConfig(url, "[tailnet]\nrequire_grant = true\n"), "")
	adminNode := tn.clientNode(t, "ops-laptop")
	userNode := tn.clientNode(t, "dev-laptop")

	// One grant per source: the admin grant for ops-laptop only. After a
	// raw map response the control server sends the router no automatic
	// updates, so the packet filter is given whole (allow all, plus the
	// grants).
	v4 := func(s *tsnet.Server) string { ip, _ := s.TailscaleIPs(); return ip.String() }
	grant := func(src, value string) tailcfg.FilterRule {
		return tailcfg.FilterRule{SrcIPs: []string{src}, CapGrant: []tailcfg.CapGrant{{
			Dsts:   []netip.Prefix{tsaddr.AllIPv4(), tsaddr.AllIPv6()},
			CapMap: tailcfg.PeerCapMap{testCap: {tailcfg.RawMessage(value)}},
		}}}
	}
	lc, err := r.node.TSNet().LocalClient()
	if err != nil {
		t.Fatal(err)
	}
	st, err := lc.StatusWithoutPeers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	filter := append(slices.Clone(tailcfg.FilterAllowAll),
		grant(v4(adminNode), `{"models":["*"],"admin":true}`),
		grant(v4(userNode), `{"models":["*"]}`))
	if !tn.control.AddRawMapResponse(st.Self.PublicKey, &tailcfg.MapResponse{PacketFilter: filter}) {
		t.Fatal("the control server does not know the router node")
	}

	noRedirects := func(s *tsnet.Server) *http.Client {
		c := s.HTTPClient()
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return c
	}
	admin, user := noRedirects(adminNode), noRedirects(userNode)
	for deadline := time.Now().Add(20 * time.Second); ; {
		if status, _ := get(t, admin, "http://anvil/v1/admin/transition"); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the admin grant never reached the router")
		}
		time.Sleep(50 * time.Millisecond)
	}

	cases := []struct {
		name     string
		c        *http.Client
		path     string
		status   int
		location string // for redirects
		contains string
		lacks    string
	}{
		{"admin start page", admin, "/webui", http.StatusSeeOther, "/webui/dashboard", "", ""},
		{"admin dashboard", admin, "/webui/dashboard", http.StatusOK, "", "ops-laptop", ""},
		{"admin keys page", admin, "/webui/keys", http.StatusOK, "", `data-page="keys"`, ""},
		{"admin config page", admin, "/webui/config", http.StatusOK, "", `data-page="config"`, ""},
		{"admin needs no login", admin, "/webui/login", http.StatusSeeOther, "/webui", "", ""},
		{"admin API", admin, "/v1/admin/transition", http.StatusOK, "", `"tier_id":"local-a"`, ""},
		{"admin config API", admin, "/admin/config", http.StatusOK, "", "config_hash", ""},
		{"user start page", user, "/webui", http.StatusSeeOther, "/webui/my", "", ""},
		{"user's own page", user, "/webui/my", http.StatusOK, "", "dev-laptop", "/webui/dashboard"},
		{"user refused the dashboard", user, "/webui/dashboard", http.StatusForbidden, "", "needs the admin right", ""},
		{"user refused the keys page", user, "/webui/keys", http.StatusForbidden, "", "", ""},
		{"user refused the config page", user, "/webui/config", http.StatusForbidden, "", "", ""},
		{"user refused the admin API", user, "/v1/admin/transition", http.StatusForbidden, "", "permission_error", ""},
		{"user refused the key API", user, "/admin/api-keys", http.StatusForbidden, "", "", ""},
		{"user refused the config API", user, "/admin/config", http.StatusForbidden, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://anvil"+tc.path, nil)
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
				t.Fatalf("GET %s: %d to %q, want %d to %q: %.300s", tc.path, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location, body)
			}
			if !strings.Contains(body, tc.contains) || (tc.lacks != "" && strings.Contains(body, tc.lacks)) {
				t.Errorf("GET %s: body lacks %q or has %q: %.500s", tc.path, tc.contains, tc.lacks, body)
			}
			if resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("GET %s set a cookie on the tailnet: %s", tc.path, resp.Header.Get("Set-Cookie"))
			}
		})
	}

	// Writes from the admin's browser: the identity authorizes them, so
	// the origin and the CSRF token are what tell the UI from a forgery.
	_, page := get(t, admin, "http://anvil/webui/tiers")
	m := csrfMeta.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		t.Fatal("no CSRF token in the tiers page")
	}
	dryRun := `{"action":"quiesce","tier_id":"local-a","dry_run":true}`
	writes := []struct {
		name   string
		c      *http.Client
		hdr    []string
		status int
	}{
		{"admin's UI write", admin, []string{"Origin", "http://anvil", "Sec-Fetch-Site", "same-origin", "X-CSRF-Token", m[1]}, http.StatusOK},
		{"forged from another site", admin, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site", "X-CSRF-Token", m[1]}, http.StatusForbidden},
		{"same origin without the token", admin, []string{"Origin", "http://anvil", "Sec-Fetch-Site", "same-origin"}, http.StatusForbidden},
		{"another identity's token", user, []string{"Origin", "http://anvil", "X-CSRF-Token", m[1]}, http.StatusForbidden},
		{"a script (no browser headers)", admin, nil, http.StatusOK},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://anvil/v1/admin/transition", strings.NewReader(dryRun))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(w.hdr); i += 2 {
				req.Header.Set(w.hdr[i], w.hdr[i+1])
			}
			resp, err := w.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, resp); resp.StatusCode != w.status {
				t.Errorf("POST: %d %s, want %d", resp.StatusCode, body, w.status)
			}
		})
	}
}
