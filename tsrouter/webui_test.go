package tsrouter_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
)

// uiBrowser is a Go client that behaves like the UI's browser: a cookie
// jar, no redirects followed, and Origin / Sec-Fetch-Site on writes.
type uiBrowser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newUIBrowser(t *testing.T, base string) *uiBrowser {
	jar, _ := cookiejar.New(nil)
	return &uiBrowser{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends method path with body and header pairs; it returns the
// status, the body and the response headers.
func (b *uiBrowser) do(ctx context.Context, method, path, body string, hdr ...string) (int, string, http.Header) {
	b.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp.StatusCode, readAll(b.t, resp), resp.Header
}

var csrfMeta = regexp.MustCompile(`name="csrf-token" content="([0-9a-f]*)"`)

// csrf is the CSRF token the page at path carries.
func (b *uiBrowser) csrf(ctx context.Context, path string) string {
	b.t.Helper()
	status, body, _ := b.do(ctx, http.MethodGet, path, "")
	m := csrfMeta.FindStringSubmatch(body)
	if status != http.StatusOK || m == nil || m[1] == "" {
		b.t.Fatalf("GET %s: %d, no CSRF token in the page", path, status)
	}
	return m[1]
}

// login posts the login form as the browser would.
func (b *uiBrowser) login(ctx context.Context, credential string) (int, http.Header) {
	b.t.Helper()
	token := b.csrf(ctx, "/webui/login")
	form := url.Values{"credential": {credential}, "csrf": {token}}.Encode()
	status, _, h := b.do(ctx, http.MethodPost, "/webui/login", form,
		"Content-Type", "application/x-www-form-urlencoded", "Origin", b.base, "Sec-Fetch-Site", "same-origin")
	return status, h
}

// TestWebUILoopbackSession: on the loopback listener the admin logs in
// once with the admin credential; the HttpOnly session cookie then
// authorizes the admin API the pages call, and writes need the page's
// CSRF token and the router's own origin. Tokens never leave the server.
func TestWebUILoopbackSession(t *testing.T) {
	ctx := t.Context()
	_, fakeURL := startFake(t, fakeserve.Options{})
	const routerToken = "router-token-for-the-ui-test-0123456789"
	base := startRouter(t, oneTier(fakeURL, ""), routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": "k"}})
	b := newUIBrowser(t, base)

	// Before login: the UI asks for it; the API refuses.
	status, _, h := b.do(ctx, http.MethodGet, "/webui", "")
	if status != http.StatusSeeOther || h.Get("Location") != "/webui/login" {
		t.Fatalf("GET /webui before login: %d to %q, want 303 to /webui/login", status, h.Get("Location"))
	}
	status, page, h := b.do(ctx, http.MethodGet, "/webui/login", "")
	if status != http.StatusOK || !strings.Contains(page, `id="credential"`) {
		t.Fatalf("login page: %d", status)
	}
	for name, want := range map[string]string{
		"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if status, _, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status != http.StatusUnauthorized {
		t.Errorf("admin API without a session: %d, want 401", status)
	}

	// A wrong credential is refused and sets no cookie.
	if status, h := b.login(ctx, "not-the-token"); status != http.StatusUnauthorized || h.Get("Set-Cookie") != "" {
		t.Errorf("login with a wrong credential: %d, Set-Cookie %q; want 401 and none", status, h.Get("Set-Cookie"))
	}
	// A login form posted from another site is refused.
	form := url.Values{"credential": {routerToken}, "csrf": {b.csrf(ctx, "/webui/login")}}.Encode()
	if status, _, _ := b.do(ctx, http.MethodPost, "/webui/login", form, "Content-Type", "application/x-www-form-urlencoded", "Origin", "http://evil.example"); status != http.StatusForbidden {
		t.Errorf("cross-site login: %d, want 403", status)
	}

	status, h = b.login(ctx, routerToken)
	if status != http.StatusSeeOther {
		t.Fatalf("login: %d, want 303", status)
	}
	cookie := h.Get("Set-Cookie")
	for _, want := range []string{"anvil_ui_session=", "HttpOnly", "SameSite=Strict", "Path=/", "Expires="} {
		if !strings.Contains(cookie, want) {
			t.Errorf("session cookie %q lacks %q", cookie, want)
		}
	}
	if strings.Contains(cookie, routerToken) || !regexp.MustCompile(`anvil_ui_session=[0-9a-f]{64};`).MatchString(cookie) {
		t.Errorf("session cookie %q is not a random 32-byte id", cookie)
	}

	// The session stands for the admin credential on the admin API.
	if status, body, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status != http.StatusOK {
		t.Errorf("admin API with the session: %d %s", status, body)
	}
	// ... but not for inference.
	if status, _, _ := b.do(ctx, http.MethodPost, "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
		"Content-Type", "application/json"); status != http.StatusUnauthorized {
		t.Errorf("inference with only the session: %d, want 401", status)
	}
	csrf := b.csrf(ctx, "/webui/tiers")
	quiesce := `{"action":"quiesce","tier_id":"local-a","dry_run":true}`
	writes := []struct {
		name   string
		hdr    []string
		status int
	}{
		{"the UI's own write", []string{"Origin", base, "Sec-Fetch-Site", "same-origin", "X-CSRF-Token", csrf}, http.StatusOK},
		{"no CSRF token", []string{"Origin", base, "Sec-Fetch-Site", "same-origin"}, http.StatusForbidden},
		{"wrong CSRF token", []string{"Origin", base, "X-CSRF-Token", strings.Repeat("0", 64)}, http.StatusForbidden},
		{"forged from another origin", []string{"Origin", "http://evil.example", "X-CSRF-Token", csrf}, http.StatusForbidden},
		{"forged, Sec-Fetch-Site cross-site", []string{"Sec-Fetch-Site", "cross-site", "X-CSRF-Token", csrf}, http.StatusForbidden},
		{"cookie alone, no browser headers", nil, http.StatusForbidden},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			status, body, _ := b.do(ctx, http.MethodPost, "/v1/admin/transition", quiesce, append([]string{"Content-Type", "application/json"}, w.hdr...)...)
			if status != w.status {
				t.Errorf("POST /v1/admin/transition: %d %s, want %d", status, body, w.status)
			}
		})
	}
	// A script with the token (no cookie, no browser headers) is not
	// affected.
	resp := post(t, ctx, base+"/v1/admin/transition", quiesce, "Authorization", "Bearer "+routerToken)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("curl-style admin POST: %d", resp.StatusCode)
	}
	readAll(t, resp)

	// Every page renders for the admin; /admin/config hides the token.
	for _, p := range []string{"dashboard", "usage", "my", "keys", "tiers", "requests", "guardrails", "config"} {
		if status, body, _ := b.do(ctx, http.MethodGet, "/webui/"+p, ""); status != http.StatusOK || !strings.Contains(body, `data-page="`+p+`"`) {
			t.Errorf("page %s: %d", p, status)
		}
	}
	if status, body, _ := b.do(ctx, http.MethodGet, "/admin/config", ""); status != http.StatusOK || strings.Contains(body, routerToken) || !strings.Contains(body, "config_hash") {
		t.Errorf("/admin/config: %d %s", status, body)
	}
	if status, _, h := b.do(ctx, http.MethodGet, "/ui/", ""); status != http.StatusFound || h.Get("Location") != "/webui" {
		t.Errorf("/ui/: %d to %q, want 302 to /webui", status, h.Get("Location"))
	}

	// Logout ends the session on the server.
	status, _, _ = b.do(ctx, http.MethodPost, "/webui/logout", url.Values{"csrf": {csrf}}.Encode(),
		"Content-Type", "application/x-www-form-urlencoded", "Origin", base)
	if status != http.StatusSeeOther {
		t.Errorf("logout: %d", status)
	}
	u, _ := url.Parse(base)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "anvil_ui_session", Value: strings.TrimPrefix(strings.SplitN(cookie, ";", 2)[0], "anvil_ui_session=")}})
	if status, _, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status != http.StatusUnauthorized {
		t.Errorf("admin API with the logged-out session: %d, want 401", status)
	}
}

// TestWebUIAdminTokenLogin: the login form takes the admin credential of
// whichever [admin.auth] method is configured, as the admin API takes it;
// the router token is not an admin credential once one is.
func TestWebUIAdminTokenLogin(t *testing.T) {
	ctx := t.Context()
	_, fakeURL := startFake(t, fakeserve.Options{})
	const routerTok = "router-token-0123456789"
	routers := []struct {
		name string
		o    routerOpts
		// good logs in; bad do not.
		good string
		bad  []string
	}{
		{"[admin].auth_env token", routerOpts{adminToken: "admin-token-0123456789"}, "admin-token-0123456789", []string{routerTok, ""}},
		{"bearer_token", routerOpts{adminAuth: tsrouter.AdminAuth{Method: tsrouter.AdminBearerToken, Token: policy.NewToken("bearer-admin-0123456789")}}, "bearer-admin-0123456789", []string{routerTok}},
		{"api_key", routerOpts{adminAuth: tsrouter.AdminAuth{Method: tsrouter.AdminAPIKey, Token: policy.NewToken("apikey-admin-0123456789")}}, "apikey-admin-0123456789", []string{routerTok}},
		{"basic", routerOpts{adminAuth: tsrouter.AdminAuth{Method: tsrouter.AdminBasic, Username: "ops", Password: policy.NewToken("basic-pw-0123456789")}}, "ops:basic-pw-0123456789", []string{"ops:wrong", "basic-pw-0123456789", routerTok}},
		{"legacy: the router token", routerOpts{}, routerTok, []string{"other-0123456789"}},
	}
	for _, rt := range routers {
		t.Run(rt.name, func(t *testing.T) {
			o := rt.o
			o.token, o.env = routerTok, map[string]string{"SERVE_A_KEY": "k"}
			base := startRouter(t, oneTier(fakeURL, ""), o)
			for _, bad := range rt.bad {
				if status, _ := newUIBrowser(t, base).login(ctx, bad); status != http.StatusUnauthorized {
					t.Errorf("login with a wrong credential: %d, want 401", status)
				}
			}
			b := newUIBrowser(t, base)
			if status, _ := b.login(ctx, rt.good); status != http.StatusSeeOther {
				t.Fatalf("login with the admin credential: %d, want 303", status)
			}
			if status, body, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status != http.StatusOK {
				t.Errorf("admin API with the session: %d %s", status, body)
			}
		})
	}
}

// TestWebUIDisabled: [webui] enabled = false serves no UI.
func TestWebUIDisabled(t *testing.T) {
	_, fakeURL := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(fakeURL, "")+"\n[webui]\nenabled = false\n", routerOpts{token: "tok-0123456789", env: map[string]string{"SERVE_A_KEY": "k"}})
	resp := post(t, t.Context(), base+"/webui/login", "", "Authorization", "Bearer tok-0123456789")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /webui/login with the UI disabled: %d, want 404", resp.StatusCode)
	}
	readAll(t, resp)
}

// TestWebUISecretsNotLogged: neither the credential typed into the login
// form (right or wrong) nor the session id reaches the audit log.
func TestWebUISecretsNotLogged(t *testing.T) {
	ctx := t.Context()
	_, fakeURL := startFake(t, fakeserve.Options{})
	const routerTok = "router-token-logged-never-0123456789"
	var logs syncBuffer
	srv := httptest.NewServer(newHandler(t, oneTier(fakeURL, ""), routerOpts{token: routerTok, env: map[string]string{"SERVE_A_KEY": "k"}}, slog.New(slog.NewJSONHandler(&logs, nil))))
	t.Cleanup(srv.Close)
	b := newUIBrowser(t, srv.URL)
	const wrong = "wrong-credential-typed-by-mistake-42"
	b.login(ctx, wrong)
	_, h := b.login(ctx, routerTok)
	session := strings.TrimPrefix(strings.SplitN(h.Get("Set-Cookie"), ";", 2)[0], "anvil_ui_session=")
	b.do(ctx, http.MethodGet, "/v1/admin/transition", "")
	out := logs.String()
	if !strings.Contains(out, "webui login") {
		t.Fatalf("no audit line for the login: %s", out)
	}
	for _, secret := range []string{routerTok, wrong, session} {
		if secret == "" || strings.Contains(out, secret) {
			t.Errorf("the audit log holds %q (or the session id is empty):\n%s", secret, out)
		}
	}
}

// TestWebUISessionIsNoKey: in blocking mode the paths that need an API
// key still need one; a session stands for the admin credential and the
// router token only.
func TestWebUISessionIsNoKey(t *testing.T) {
	ctx := t.Context()
	_, fakeURL := startFake(t, fakeserve.Options{})
	const routerTok = "router-token-0123456789"
	base := startRouter(t, webuiConfig(fakeURL), routerOpts{token: routerTok, env: map[string]string{"SERVE_A_KEY": "k", "TRAFFIC_KEY": "sk-traffic-0123456789"}})
	b := newUIBrowser(t, base)
	if status, _ := b.login(ctx, routerTok); status != http.StatusSeeOther {
		t.Fatalf("login: %d", status)
	}
	for path, want := range map[string]int{
		"/v1/admin/transition": http.StatusOK,           // admin: the session is the credential
		"/v1/models/capacity":  http.StatusOK,           // metadata: no key needed in blocking mode
		"/v1/models":           http.StatusUnauthorized, // blocking mode wants a key here
	} {
		if status, body, _ := b.do(ctx, http.MethodGet, path, ""); status != want {
			t.Errorf("GET %s with the session: %d %s, want %d", path, status, body, want)
		}
	}
}

// TestWebUILoginThrottled: guessing the credential is limited to ten
// attempts a minute; the eleventh is 429 even with the right credential.
func TestWebUILoginThrottled(t *testing.T) {
	ctx := t.Context()
	_, fakeURL := startFake(t, fakeserve.Options{})
	const routerTok = "router-token-0123456789"
	base := startRouter(t, oneTier(fakeURL, ""), routerOpts{token: routerTok, env: map[string]string{"SERVE_A_KEY": "k"}})
	b := newUIBrowser(t, base)
	for i := range 10 {
		if status, _ := b.login(ctx, "guess"); status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, status)
		}
	}
	if status, h := b.login(ctx, routerTok); status != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("eleventh attempt: %d (Retry-After %q), want 429 with Retry-After", status, h.Get("Retry-After"))
	}
}

// TestWebUIKeySessionEndsWithTheKey: a UI session opened with an admin API
// key lasts only as long as that key does — disabling or rotating it ends
// the session at the next request.
func TestWebUIKeySessionEndsWithTheKey(t *testing.T) {
	ctx := t.Context()
	_, url := startFake(t, fakeserve.Options{})
	const adminTok = "admin-token-ui-0123456789"
	base := startRouter(t, oneTier(url, "")+"\n[api_keys]\nmode = \"blocking\"\n",
		routerOpts{adminToken: adminTok, keyStore: filepath.Join(t.TempDir(), "keys.json")})
	api := func(method, path, body string) (int, string) {
		t.Helper()
		resp := post(t, ctx, base+path, body, "X-Admin-Token", adminTok)
		if method != http.MethodPost {
			t.Fatal("api: POST only")
		}
		return resp.StatusCode, readAll(t, resp)
	}
	for _, end := range []string{"disable", "rotate"} {
		t.Run(end, func(t *testing.T) {
			id := "ui-admin-" + end
			status, body := api(http.MethodPost, "/admin/api-keys", `{"id":"`+id+`","user_id":"ops","organization_id":"o","scopes":["admin"]}`)
			var created struct{ Key string }
			if status != 201 || json.Unmarshal([]byte(body), &created) != nil || created.Key == "" {
				t.Fatalf("create: %d %s", status, body)
			}
			b := newUIBrowser(t, base)
			if status, _ := b.login(ctx, created.Key); status != http.StatusSeeOther {
				t.Fatalf("login with the admin key: %d, want 303", status)
			}
			if status, body, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status != http.StatusOK {
				t.Fatalf("admin API with the key's session: %d %s", status, body)
			}
			if status, body := api(http.MethodPost, "/admin/api-keys/"+id+"/"+end, ""); status != 200 {
				t.Fatalf("%s: %d %s", end, status, body)
			}
			if status, _, _ := b.do(ctx, http.MethodGet, "/v1/admin/transition", ""); status == http.StatusOK {
				t.Errorf("after %s of its key the session still reaches the admin API", end)
			}
			if status, _, h := b.do(ctx, http.MethodGet, "/webui/", ""); status != http.StatusSeeOther || h.Get("Location") != "/webui/login" {
				t.Errorf("after %s of its key GET /webui/: %d to %q, want 303 to the login", end, status, h.Get("Location"))
			}
		})
	}
}
