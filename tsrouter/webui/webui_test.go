package webui_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/webui"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func withCookie(c *http.Cookie) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/webui/dashboard", nil)
	r.AddCookie(c)
	return r
}

// TestSessions: a session is a random 32-byte id bound to whom it was
// issued, lives its TTL and no longer, and ends on logout.
func TestSessions(t *testing.T) {
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	ui, err := webui.New(webui.Options{Prefix: "/webui", SessionTTL: time.Hour, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ui.NewSession(webui.Session{Binding: "loopback"})
	if err != nil {
		t.Fatal(err)
	}
	other, _ := ui.NewSession(webui.Session{Binding: "loopback"})
	if len(s.ID) != 64 || s.ID == other.ID {
		t.Fatalf("session ids %q, %q: want distinct 64-hex-digit ids", s.ID, other.ID)
	}
	c := ui.Cookie(s, true)
	if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || !c.Expires.Equal(clk.t.Add(time.Hour)) {
		t.Errorf("cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path=/, expiry in an hour", c)
	}
	if ui.Cookie(s, false).Secure {
		t.Error("cookie Secure without TLS")
	}
	cases := []struct {
		name    string
		cookie  *http.Cookie
		binding string
		after   time.Duration
		ok      bool
	}{
		{"live", c, "loopback", 0, true},
		{"another binding", c, "tailnet\x00mini", 0, false},
		{"unknown id", &http.Cookie{Name: webui.CookieName, Value: strings.Repeat("a", 64)}, "loopback", 0, false},
		{"not an id", &http.Cookie{Name: webui.CookieName, Value: "x"}, "loopback", 0, false},
		{"just before expiry", c, "loopback", time.Hour - time.Second, true},
		{"expired", c, "loopback", time.Hour, false},
	}
	start := clk.t
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clk.t = start.Add(tc.after)
			if _, ok := ui.Session(withCookie(tc.cookie), tc.binding); ok != tc.ok {
				t.Errorf("Session: %v, want %v", ok, tc.ok)
			}
		})
	}
	clk.t = start
	ui.EndSession(other.ID)
	if _, ok := ui.Session(withCookie(ui.Cookie(other, false)), "loopback"); ok {
		t.Error("a session still valid after EndSession")
	}
	if clear := ui.Cookie(webui.Session{}, false); clear.MaxAge >= 0 || clear.Value != "" {
		t.Errorf("clearing cookie %+v", clear)
	}
}

// TestCSRF: a token is bound to its subject and to this process's key.
func TestCSRF(t *testing.T) {
	a, _ := webui.New(webui.Options{Prefix: "/webui"})
	b, _ := webui.New(webui.Options{Prefix: "/webui"})
	tok := a.CSRFToken("session-1")
	cases := []struct {
		name    string
		ui      *webui.UI
		subject string
		token   string
		ok      bool
	}{
		{"its own subject", a, "session-1", tok, true},
		{"another subject", a, "session-2", tok, false},
		{"another process", b, "session-1", tok, false},
		{"empty token", a, "session-1", "", false},
		{"empty subject", a, "", a.CSRFToken(""), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.ui.CheckCSRF(tc.subject, tc.token); got != tc.ok {
				t.Errorf("CheckCSRF = %v, want %v", got, tc.ok)
			}
		})
	}
}

// TestCrossSite: only a browser's headers can make a request cross-site;
// the Origin must be exactly the request's own scheme and host.
func TestCrossSite(t *testing.T) {
	cases := []struct {
		name  string
		host  string
		tls   bool
		hdr   map[string]string
		cross bool
	}{
		{"no browser headers", "anvil", false, nil, false},
		{"same origin", "anvil", false, map[string]string{"Origin": "http://anvil", "Sec-Fetch-Site": "same-origin"}, false},
		{"same origin over TLS", "anvil.tail.ts.net", true, map[string]string{"Origin": "https://anvil.tail.ts.net"}, false},
		{"scheme differs", "anvil", true, map[string]string{"Origin": "http://anvil"}, true},
		{"port differs", "127.0.0.1:8080", false, map[string]string{"Origin": "http://127.0.0.1:9090"}, true},
		{"another site", "anvil", false, map[string]string{"Origin": "http://evil.example"}, true},
		{"opaque origin", "anvil", false, map[string]string{"Origin": "null"}, true},
		{"same-site is not same-origin", "anvil", false, map[string]string{"Sec-Fetch-Site": "same-site"}, true},
		{"cross-site without Origin", "anvil", false, map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"typed in the address bar", "anvil", false, map[string]string{"Sec-Fetch-Site": "none"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "http://"+tc.host+"/v1/admin/transition", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			if got := webui.CrossSite(r); got != tc.cross {
				t.Errorf("CrossSite = %v, want %v", got, tc.cross)
			}
			if got := webui.FromBrowser(r); got != (len(tc.hdr) > 0) {
				t.Errorf("FromBrowser = %v", got)
			}
		})
	}
}

// TestPagesRender: every page renders with the security headers, without
// inline script or style, and a non-admin's navigation has no admin page.
func TestPagesRender(t *testing.T) {
	ui, err := webui.New(webui.Options{Prefix: "/console"})
	if err != nil {
		t.Fatal(err)
	}
	pages := []string{webui.PageLogin, webui.PageForbidden, webui.PageNotFound}
	for _, n := range webui.Nav {
		pages = append(pages, n.Name)
	}
	for _, p := range pages {
		for _, admin := range []bool{true, false} {
			w := httptest.NewRecorder()
			if err := ui.Render(w, http.StatusOK, webui.View{Page: p, Admin: admin, CSRF: "tok"}); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			body := w.Body.String()
			if w.Header().Get("Content-Security-Policy") != webui.CSP || w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: security headers missing: %v", p, w.Header())
			}
			if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "<style") || strings.Contains(body, "onclick=") {
				t.Errorf("%s: inline script or style in the page", p)
			}
			if !strings.Contains(body, `src="/console/static/app.js"`) {
				t.Errorf("%s: assets not under the prefix", p)
			}
			if !admin && strings.Contains(body, `href="/console/dashboard"`) {
				t.Errorf("%s: a non-admin's navigation links an admin page", p)
			}
		}
	}
}
