package tsrouter_test

import (
	"context"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/tailcfg"
)

// The [admin.auth] secrets of these tests.
const (
	adminSecret = "adm-0123456789abcdef-secret"
	adminUser   = "ops"
	adminPass   = "pw-0123456789abcdef-secret"
)

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// adminMethods are the configured forms of each method.
var adminMethods = map[tsrouter.AdminMethod]tsrouter.AdminAuth{
	tsrouter.AdminBearerToken: {Method: tsrouter.AdminBearerToken, Token: policy.NewToken(adminSecret)},
	tsrouter.AdminBasic:       {Method: tsrouter.AdminBasic, Username: adminUser, Password: policy.NewToken(adminPass)},
	tsrouter.AdminAPIKey:      {Method: tsrouter.AdminAPIKey, Token: policy.NewToken(adminSecret)},
}

// getStatus sends GET path with headers and returns the status and body.
func getStatus(t *testing.T, base, path string, hdr ...string) (int, string) {
	t.Helper()
	return get(t, http.DefaultClient, base+path, hdr...)
}

// TestAdminAuthMethods: each [admin.auth] method accepts its own
// credential on an admin route and refuses wrong values and the other
// methods' headers. With a router token configured, the admin credential
// stands in for it on admin routes only (so it may be sent alone, or
// beside the router token in the other header); 401 is the door's
// refusal (no router token and no admin credential), 403 a caller past
// the door without admin rights.
func TestAdminAuthMethods(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	bearer := func(v string) string { return "Bearer " + v }
	rightBasic, wrongPass, wrongUser := basicAuth(adminUser, adminPass), basicAuth(adminUser, adminPass+"x"), basicAuth("root", adminPass)
	type attempt struct {
		name string
		hdr  []string
		want int
	}
	tests := []struct {
		method   tsrouter.AdminMethod
		attempts []attempt
	}{
		{tsrouter.AdminBearerToken, []attempt{
			{"admin token in Authorization, alone", []string{"Authorization", bearer(adminSecret)}, 200},
			{"admin token in Authorization, router token in X-Api-Key", []string{"Authorization", bearer(adminSecret), "X-Api-Key", routerToken}, 200},
			{"router token in Authorization, admin token in X-Admin-Token", []string{"Authorization", bearer(routerToken), "X-Admin-Token", adminSecret}, 200},
			{"admin token in X-Admin-Token, alone", []string{"X-Admin-Token", adminSecret}, 200},
			{"router token only", []string{"Authorization", bearer(routerToken)}, 403},
			{"wrong admin token", []string{"Authorization", bearer(adminSecret + "x")}, 401},
			{"wrong X-Admin-Token beside the router token", []string{"Authorization", bearer(routerToken), "X-Admin-Token", adminSecret + "x"}, 403},
			{"api_key's header is not bearer_token's", []string{"Authorization", bearer(routerToken), "X-Api-Key", adminSecret}, 403},
			{"basic's header is not bearer_token's", []string{"Authorization", basicAuth(adminUser, adminSecret), "X-Api-Key", routerToken}, 401},
			{"nothing", nil, 401},
		}},
		{tsrouter.AdminBasic, []attempt{
			{"basic, alone", []string{"Authorization", rightBasic}, 200},
			{"basic, router token in X-Api-Key", []string{"Authorization", rightBasic, "X-Api-Key", routerToken}, 200},
			{"scheme in lower case", []string{"Authorization", "basic " + strings.TrimPrefix(rightBasic, "Basic ")}, 200},
			{"wrong password", []string{"Authorization", wrongPass, "X-Api-Key", routerToken}, 401},
			{"wrong user name", []string{"Authorization", wrongUser}, 401},
			{"router token only", []string{"Authorization", bearer(routerToken)}, 403},
			{"the password as a bearer token", []string{"Authorization", bearer(adminPass)}, 401},
			{"the password in X-Admin-Token", []string{"Authorization", bearer(routerToken), "X-Admin-Token", adminPass}, 403},
			{"the password in X-Api-Key", []string{"Authorization", bearer(routerToken), "X-Api-Key", adminPass}, 403},
		}},
		{tsrouter.AdminAPIKey, []attempt{
			{"admin key in X-Api-Key, alone", []string{"X-Api-Key", adminSecret}, 200},
			{"router token in Authorization, admin key in X-Api-Key", []string{"Authorization", bearer(routerToken), "X-Api-Key", adminSecret}, 200},
			{"wrong admin key beside the router token", []string{"Authorization", bearer(routerToken), "X-Api-Key", adminSecret + "x"}, 403},
			{"wrong admin key alone", []string{"X-Api-Key", adminSecret + "x"}, 401},
			{"bearer_token's header is not api_key's", []string{"Authorization", bearer(adminSecret)}, 401},
			{"X-Admin-Token is not api_key's", []string{"Authorization", bearer(routerToken), "X-Admin-Token", adminSecret}, 403},
			{"router token only", []string{"X-Api-Key", routerToken}, 403},
		}},
	}
	for _, tc := range tests {
		t.Run(string(tc.method), func(t *testing.T) {
			base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken, adminAuth: adminMethods[tc.method]})
			for _, a := range tc.attempts {
				t.Run(a.name, func(t *testing.T) {
					status, body := getStatus(t, base, "/v1/stats", a.hdr...)
					if status != a.want {
						t.Fatalf("GET /v1/stats: %d, want %d: %s", status, a.want, body)
					}
					if status != 200 {
						e := decodeError(t, body)
						if want := map[int]string{401: "authentication_error", 403: "permission_error"}[status]; e.Error.Type != want {
							t.Errorf("error type %q, want %q", e.Error.Type, want)
						}
					}
					for _, s := range []string{adminSecret, adminPass, routerToken} {
						if strings.Contains(body, s) {
							t.Errorf("the response shows a secret: %s", body)
						}
					}
				})
			}
			// Only on admin routes: elsewhere the admin credential is not
			// the router token.
			for _, hdr := range [][]string{
				{"Authorization", bearer(adminSecret)}, {"Authorization", rightBasic}, {"X-Api-Key", adminSecret}, {"X-Admin-Token", adminSecret},
			} {
				if status, body := getStatus(t, base, "/v1/models", hdr...); status != 401 {
					t.Errorf("GET /v1/models with %s only: %d, want 401: %s", hdr[0], status, body)
				}
			}
		})
	}
}

// TestAdminAuthWithoutRouterToken: with no router token every caller of
// the dev listener passes the door, so a missing or wrong admin
// credential is a 403 (an admin credential exists: not the 404 of a
// router with no admin at all).
func TestAdminAuthWithoutRouterToken(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	tests := []struct {
		method     tsrouter.AdminMethod
		right, bad []string
	}{
		{tsrouter.AdminBearerToken, []string{"Authorization", "Bearer " + adminSecret}, []string{"Authorization", "Bearer " + adminSecret + "x"}},
		{tsrouter.AdminBasic, []string{"Authorization", basicAuth(adminUser, adminPass)}, []string{"Authorization", basicAuth(adminUser, "")}},
		{tsrouter.AdminAPIKey, []string{"X-Api-Key", adminSecret}, []string{"X-Api-Key", "sk-" + adminSecret}},
	}
	for _, tc := range tests {
		t.Run(string(tc.method), func(t *testing.T) {
			base := startRouter(t, oneTier(url, ""), routerOpts{adminAuth: adminMethods[tc.method]})
			for _, c := range []struct {
				name string
				hdr  []string
				want int
			}{{"right", tc.right, 200}, {"wrong", tc.bad, 403}, {"none", nil, 403}} {
				if status, body := getStatus(t, base, "/v1/stats", c.hdr...); status != c.want {
					t.Errorf("%s credential: %d, want %d: %s", c.name, status, c.want, body)
				}
			}
		})
	}
	t.Run("not configured", func(t *testing.T) {
		base := startRouter(t, oneTier(url, ""), routerOpts{})
		if status, _ := getStatus(t, base, "/v1/stats", "Authorization", "Bearer "+adminSecret); status != 404 {
			t.Errorf("no admin credential at all: %d, want 404", status)
		}
	})
}

// TestAdminAuthMisconfiguredFailsClosed: an AdminAuth whose secret is
// missing (a programming error serve's checks prevent) admits no one as
// admin: an unset digest must not match everything.
func TestAdminAuthMisconfiguredFailsClosed(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	for _, a := range []tsrouter.AdminAuth{
		{Method: tsrouter.AdminBearerToken},
		{Method: tsrouter.AdminAPIKey},
		{Method: tsrouter.AdminBasic, Username: adminUser},
		{Method: tsrouter.AdminBasic, Password: policy.NewToken(adminPass)},
	} {
		t.Run(string(a.Method), func(t *testing.T) {
			if a.Check() == nil {
				t.Errorf("Check accepts %+v", a)
			}
			base := startRouter(t, oneTier(url, ""), routerOpts{adminAuth: a})
			for _, hdr := range [][]string{
				{"Authorization", "Bearer anything"}, {"X-Api-Key", "anything"}, {"X-Admin-Token", "anything"},
				{"Authorization", basicAuth(adminUser, "")}, {"Authorization", basicAuth("", adminPass)}, {"Authorization", basicAuth(adminUser, adminPass)},
			} {
				if status, _ := getStatus(t, base, "/v1/stats", hdr...); status != 403 {
					t.Errorf("%s %q: %d, want 403", hdr[0], hdr[1], status)
				}
			}
		})
	}
}

// fakeTailnetDoor serves h's tailnet door on loopback with a fake WhoIs
// for one tagged node carrying grant (none when "").
func fakeTailnetDoor(t *testing.T, h *tsrouter.Handler, grant string) string {
	t.Helper()
	whois := func(context.Context, string) (*apitype.WhoIsResponse, error) {
		who := &apitype.WhoIsResponse{Node: &tailcfg.Node{Name: "mini.ts.net.", Tags: []string{"tag:mini"}}, UserProfile: &tailcfg.UserProfile{LoginName: "tagged-devices"}}
		if grant != "" {
			who.CapMap = tailcfg.PeerCapMap{testCap: {tailcfg.RawMessage(grant)}}
		}
		return who, nil
	}
	srv := httptest.NewServer(h.Tailnet(tsrouter.TailnetAccess{WhoIs: whois, Capability: testCap, Rules: policy.TailnetRules{AllowTags: []string{"tag:mini"}}}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAdminAuthNoneLoopbackOnly: method none makes a caller an admin
// without a credential on the loopback doors only (the router token, when
// configured, is still required there); on the tailnet door — here on
// loopback too, so only the door decides — a caller still needs an admin
// grant or an admin key.
func TestAdminAuthNoneLoopbackOnly(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	none := tsrouter.AdminAuth{Method: tsrouter.AdminNone}
	t.Run("dev listener without router token", func(t *testing.T) {
		base := startRouter(t, oneTier(url, ""), routerOpts{adminAuth: none})
		if status, body := getStatus(t, base, "/v1/stats"); status != 200 {
			t.Errorf("no credential: %d %s", status, body)
		}
	})
	h := newHandler(t, oneTier(url, ""), routerOpts{token: routerToken, adminAuth: none}, nil)
	dev := httptest.NewServer(h)
	defer dev.Close()
	local := httptest.NewServer(h.Local(true))
	defer local.Close()
	for name, base := range map[string]string{"dev listener": dev.URL, "local API": local.URL} {
		t.Run(name, func(t *testing.T) {
			if status, body := getStatus(t, base, "/v1/stats", "Authorization", "Bearer "+routerToken); status != 200 {
				t.Errorf("router token, no admin credential: %d %s", status, body)
			}
			if status, _ := getStatus(t, base, "/v1/stats"); status != 401 {
				t.Errorf("no router token: %d, want 401", status)
			}
		})
	}
	t.Run("tailnet", func(t *testing.T) {
		plain := fakeTailnetDoor(t, h, "")
		if status, body := getStatus(t, plain, "/v1/stats", "Authorization", "Bearer "+routerToken); status != 403 {
			t.Errorf("tailnet caller without an admin grant: %d, want 403: %s", status, body)
		}
		if status, _ := getStatus(t, plain, "/v1/models", "Authorization", "Bearer "+routerToken); status != 200 {
			t.Errorf("the same caller on /v1/models: %d (the door itself must admit it)", status)
		}
		granted := fakeTailnetDoor(t, h, `{"models":["*"],"admin":true}`)
		if status, body := getStatus(t, granted, "/v1/stats", "Authorization", "Bearer "+routerToken); status != 200 {
			t.Errorf("tailnet caller with an admin grant: %d %s", status, body)
		}
	})
	t.Run("tailnet with a method", func(t *testing.T) {
		h := newHandler(t, oneTier(url, ""), routerOpts{token: routerToken, adminAuth: adminMethods[tsrouter.AdminBearerToken]}, nil)
		base := fakeTailnetDoor(t, h, "")
		if status, body := getStatus(t, base, "/v1/stats", "Authorization", "Bearer "+adminSecret); status != 200 {
			t.Errorf("admin token from a tailnet node: %d %s", status, body)
		}
		if status, _ := getStatus(t, base, "/v1/stats", "Authorization", "Bearer "+routerToken); status != 403 {
			t.Errorf("router token from a tailnet node: %d, want 403", status)
		}
	})
}

// TestAdminAndMetricsIgnoreKeyMode: api_keys blocking mode requires a key
// on inference and model listings, not on the admin API (its own
// credential) nor on /metrics (the router token, as ever).
func TestAdminAndMetricsIgnoreKeyMode(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	env := map[string]string{"PARTNER_KEY": partnerKey}
	for _, method := range []tsrouter.AdminMethod{tsrouter.AdminBearerToken, tsrouter.AdminBasic, tsrouter.AdminAPIKey} {
		t.Run(string(method), func(t *testing.T) {
			base := startRouter(t, keysConfig(url, "blocking"), routerOpts{token: routerToken, env: env, adminAuth: adminMethods[method]})
			cred := map[tsrouter.AdminMethod][]string{
				tsrouter.AdminBearerToken: {"Authorization", "Bearer " + adminSecret},
				tsrouter.AdminBasic:       {"Authorization", basicAuth(adminUser, adminPass)},
				tsrouter.AdminAPIKey:      {"X-Api-Key", adminSecret},
			}[method]
			// Blocking mode is on: the router token alone lists no models.
			if status, _ := getStatus(t, base, "/v1/models", "Authorization", "Bearer "+routerToken); status != 401 {
				t.Fatalf("/v1/models without a key in blocking mode: %d, want 401", status)
			}
			if status, body := getStatus(t, base, "/v1/stats", cred...); status != 200 {
				t.Errorf("admin credential, no API key: %d %s", status, body)
			}
			if status, body := getStatus(t, base, "/metrics", "Authorization", "Bearer "+routerToken); status != 200 {
				t.Errorf("/metrics with the router token, no API key: %d %s", status, body)
			}
		})
	}
	t.Run("without router token", func(t *testing.T) {
		base := startRouter(t, keysConfig(url, "blocking"), routerOpts{env: env, adminAuth: adminMethods[tsrouter.AdminAPIKey]})
		if status, _ := getStatus(t, base, "/v1/models"); status != 401 {
			t.Fatalf("/v1/models without a key in blocking mode: %d, want 401", status)
		}
		if status, body := getStatus(t, base, "/metrics"); status != 200 {
			t.Errorf("/metrics: %d %s", status, body)
		}
		if status, body := getStatus(t, base, "/v1/stats", "X-Api-Key", adminSecret); status != 200 {
			t.Errorf("admin key: %d %s", status, body)
		}
	})
}

// TestAdminCredentialsNeverLogged: right and wrong admin credentials of
// every method, on admin and other routes, at debug level: no secret, no
// wrong guess and no encoded Basic header appears in the log.
func TestAdminCredentialsNeverLogged(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	var secrets []string
	for _, s := range []string{adminSecret, adminPass, routerToken} {
		secrets = append(secrets, s, s+"-wrong")
	}
	for _, m := range []tsrouter.AdminMethod{tsrouter.AdminBearerToken, tsrouter.AdminBasic, tsrouter.AdminAPIKey} {
		t.Run(string(m), func(t *testing.T) {
			var logs syncBuffer
			h := newHandler(t, oneTier(url, ""), routerOpts{token: routerToken, adminAuth: adminMethods[m]},
				slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			srv := httptest.NewServer(h)
			defer srv.Close()
			var encoded []string
			for _, pass := range []string{adminPass, adminPass + "-wrong"} {
				encoded = append(encoded, strings.TrimPrefix(basicAuth(adminUser, pass), "Basic "))
			}
			for _, path := range []string{"/v1/stats", "/admin/api-keys", "/v1/models"} {
				for _, hdr := range [][]string{
					{"Authorization", "Bearer " + adminSecret},
					{"Authorization", "Bearer " + adminSecret + "-wrong"},
					{"Authorization", basicAuth(adminUser, adminPass)},
					{"Authorization", basicAuth(adminUser, adminPass+"-wrong")},
					{"Authorization", "Bearer " + routerToken, "X-Api-Key", adminSecret},
					{"Authorization", "Bearer " + routerToken, "X-Api-Key", adminSecret + "-wrong"},
					{"Authorization", "Bearer " + routerToken + "-wrong", "X-Admin-Token", adminSecret},
				} {
					getStatus(t, srv.URL, path, hdr...)
				}
			}
			out := logs.String()
			if !strings.Contains(out, `"admin_auth":"`+string(m)+`"`) {
				t.Fatalf("no request line says how admin was proven:\n%s", out)
			}
			for _, s := range append(secrets, encoded...) {
				if strings.Contains(out, s) {
					t.Errorf("the log contains a credential (%d chars):\n%s", len(s), out)
				}
			}
		})
	}
}

// TestAdminCredentialGuessesAreThrottled: wrong admin credentials count
// against the caller; past ten a minute it is refused before its
// credential is even looked at, the right one included, so a weak basic
// password cannot be guessed at speed through the API.
func TestAdminCredentialGuessesAreThrottled(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{adminAuth: tsrouter.AdminAuth{Method: tsrouter.AdminBasic, Username: "ops", Password: policy.NewToken("guess-me-0123456789")}})
	get := func(user, pass string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/admin/config", nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode
	}
	if s := get("ops", "guess-me-0123456789"); s != 200 {
		t.Fatalf("the right password: %d", s)
	}
	for i := range 10 {
		if s := get("ops", "wrong-"+strconv.Itoa(i)); s != http.StatusForbidden && s != http.StatusUnauthorized {
			t.Fatalf("wrong guess %d: %d, want 401 or 403", i, s)
		}
	}
	if s := get("ops", "wrong-again"); s != http.StatusTooManyRequests {
		t.Errorf("the eleventh wrong guess in a minute: %d, want 429", s)
	}
	if s := get("ops", "guess-me-0123456789"); s != http.StatusTooManyRequests {
		t.Errorf("the right password while throttled: %d, want 429 (refused before it is checked)", s)
	}
}
