package tsrouter_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// DNS rebinding: a browser that reached the router under a name an
// attacker's DNS pointed here is refused on the admin API and the UI;
// the router's own names, addresses and non-browser clients are not.
func TestBrowserHostMustNameTheRouter(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	const admin = "admin-rebinding-0123456789"
	base := startRouter(t, oneTier(url, ""), routerOpts{adminToken: admin})
	cases := []struct {
		name, host string
		browser    bool
		want       int
	}{
		{"a browser under an attacker's name", "rebind.attacker.example:8080", true, 403},
		{"a browser under a name ending in a dot", "rebind.attacker.example.", true, 403},
		{"a browser on the loopback address", "127.0.0.1", true, 200},
		{"a browser on localhost", "localhost:8080", true, 200},
		{"a browser on the MagicDNS short name", "anvil", true, 200},
		{"a browser on a ts.net name", "anvil.tail1234.ts.net", true, 200},
		{"a browser on an IPv6 address", "[::1]:80", true, 200},
		{"curl under any name", "rebind.attacker.example", false, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/admin/config", nil)
			req.Host = tc.host
			req.Header.Set("X-Admin-Token", admin)
			if tc.browser {
				req.Header.Set("Sec-Fetch-Site", "same-origin")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
		})
	}
}

// DNS rebinding against ambient credentials: a request that no secret
// authenticated (here the dev listener without a router token, as the
// tailnet identity would be) must name the router, on every route — a
// rebound same-origin GET over plain HTTP carries no browser header to
// tell it by. A request with the router token may use any name.
func TestRebindingWithoutASecret(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	open := startRouter(t, oneTier(url, ""), routerOpts{})
	const tok = "rebinding-router-token-0123456789"
	guarded := startRouter(t, oneTier(url, ""), routerOpts{token: tok})
	chat := `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`
	cases := []struct {
		name, base, method, path, host, token string
		want                                  int
	}{
		{"a GET under an attacker's name", open, http.MethodGet, "/v1/models", "rebind.attacker.example", "", 403},
		{"inference under an attacker's name", open, http.MethodPost, "/v1/chat/completions", "rebind.attacker.example:80", "", 403},
		{"a GET on the loopback address", open, http.MethodGet, "/v1/models", "127.0.0.1", "", 200},
		{"inference on the MagicDNS short name", open, http.MethodPost, "/v1/chat/completions", "anvil", "", 200},
		{"the router token under any name", guarded, http.MethodPost, "/v1/chat/completions", "llm.corp.example", tok, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader(chat)
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, tc.base+tc.path, body)
			req.Host = tc.host
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, resp); resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
		})
	}
}

// A page on another site cannot make a tailnet user's browser run (and
// bill) inference with a form: cross-site browser writes are refused on
// every route; the router's own pages and non-browser clients are not.
func TestCrossSiteBrowserInferenceIsRefused(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"x":"="}`
	cases := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"a text/plain form from another site", map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, 403},
		{"another origin without fetch metadata", map[string]string{"Origin": "https://evil.example"}, 403},
		{"a same-origin browser", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"an SDK", map[string]string{"Content-Type": "application/json"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			for k, v := range tc.header {
				hdr = append(hdr, k, v)
			}
			resp := post(t, t.Context(), base+"/v1/chat/completions", body, hdr...)
			if got := readAll(t, resp); resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, got)
			}
		})
	}
}
