package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// envelopeOf checks body against the error envelope of path's dialect and
// returns the error type: Anthropic's {"type":"error","error":{…}} on the
// Messages paths, Responses' {"error":{…,"code":null}}, and
// {"error":{"type","message"}} with nothing else everywhere else.
func envelopeOf(t *testing.T, path, body string) string {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatalf("not JSON: %q", body)
	}
	var inner map[string]json.RawMessage
	if err := json.Unmarshal(top["error"], &inner); err != nil || inner == nil {
		t.Fatalf("no error object: %s", body)
	}
	var typ, msg string
	json.Unmarshal(inner["type"], &typ)
	json.Unmarshal(inner["message"], &msg)
	if typ == "" || msg == "" {
		t.Errorf("error without type or message: %s", body)
	}
	wantTop, wantInner := 1, 2
	switch path {
	case "/v1/messages":
		wantTop = 2
		if string(top["type"]) != `"error"` {
			t.Errorf("Anthropic envelope without \"type\":\"error\": %s", body)
		}
	case "/v1/responses":
		wantInner = 3
		if code, ok := inner["code"]; !ok || string(code) != "null" {
			t.Errorf("Responses envelope without \"code\":null: %s", body)
		}
	}
	if len(top) != wantTop || len(inner) != wantInner {
		t.Errorf("envelope for %s has extra members: %s", path, body)
	}
	return typ
}

// TestErrorEnvelopes: every status the router emits on an inference path
// comes in that path's dialect, so each SDK raises its typed error with
// the router's type and message filled in.
func TestErrorEnvelopes(t *testing.T) {
	_, okURL := startFake(t, fakeserve.Options{})
	_, brokenURL := startFake(t, fakeserve.Options{Mode: fakeserve.ModeStatus500})
	down, err := fakeserve.UnusedLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	tier := func(id, url string) string {
		return `
[[router.tiers]]
id = "` + id + `"
base_url = "` + url + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = true
auth_env = "SERVE_B_KEY"
model = "served-model"
`
	}
	purpose := func(id, model, url string) string {
		return `
[[router.purpose_models]]
id = "` + id + `"
kind = "embedding"
model = "` + model + `"
base_url = "` + url + `/v1"
`
	}
	cfg := strings.Replace(oneTier(okURL, ""), "[router.model_routes]",
		tier("t-broken", brokenURL)+tier("t-down", "http://"+down)+`
[router.model_routes]
broken = "t-broken"
down = "t-down"`, 1) +
		purpose("e-ok", "chat", okURL) + purpose("e-broken", "broken", brokenURL) + purpose("e-down", "down", "http://"+down) + `
[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "sk-envelope-0123456789abcdef"
id = "k"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
allowed_backends = ["local-a", "t-broken", "t-down", "e-ok", "e-broken", "e-down"]
rate_limit = 1000

[[api_keys.api_keys]]
key = "sk-narrow-0123456789abcdef"
id = "narrow"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
allowed_backends = ["t-broken"]

[[api_keys.api_keys]]
key = "sk-slow-0123456789abcdef"
id = "slow"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
rate_limit = 1
`
	base := startRouter(t, cfg, routerOpts{maxBody: 4096})
	const key = "sk-envelope-0123456789abcdef"
	bodies := map[string]func(model string) string{
		"/v1/chat/completions": func(m string) string {
			return `{"model":"` + m + `","messages":[{"role":"user","content":"hi"}]}`
		},
		"/v1/messages": func(m string) string {
			return `{"model":"` + m + `","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`
		},
		"/v1/responses":  func(m string) string { return `{"model":"` + m + `","input":"hi"}` },
		"/v1/embeddings": func(m string) string { return `{"model":"` + m + `","input":"hi"}` },
	}
	// The slow key's one request per minute is spent up front, so the
	// 429 cases below meet an empty bucket.
	readAll(t, post(t, t.Context(), base+"/v1/chat/completions", bodies["/v1/chat/completions"]("chat"), "Authorization", "Bearer sk-slow-0123456789abcdef"))
	cases := []struct {
		name   string
		status int
		do     func(path string) *http.Response
	}{
		{"400 bad JSON", 400, func(p string) *http.Response {
			return post(t, t.Context(), base+p, `{"model":`, "Authorization", "Bearer "+key)
		}},
		{"401 no key", 401, func(p string) *http.Response { return post(t, t.Context(), base+p, bodies[p]("chat")) }},
		{"403 backend outside the key's list", 403, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("chat"), "Authorization", "Bearer sk-narrow-0123456789abcdef")
		}},
		{"404 unknown model", 404, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("no-such-model"), "Authorization", "Bearer "+key)
		}},
		{"405 GET", 405, func(p string) *http.Response {
			req, _ := http.NewRequestWithContext(t.Context(), "GET", base+p, nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}},
		{"413 body over the cap", 413, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("chat"+strings.Repeat(" ", 5000)), "Authorization", "Bearer "+key)
		}},
		{"429 rate limited", 429, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("chat"), "Authorization", "Bearer sk-slow-0123456789abcdef")
		}},
		{"502 serve failed", 502, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("broken"), "Authorization", "Bearer "+key)
		}},
		// Embeddings answer a serve that is down with 502 (as the Python router:
		// no readiness, no failover there); chat paths with 503.
		{"503 serve down (502 for embeddings)", 503, func(p string) *http.Response {
			return post(t, t.Context(), base+p, bodies[p]("down"), "Authorization", "Bearer "+key)
		}},
	}
	for _, tc := range cases {
		for path := range bodies {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				resp := tc.do(path)
				body := readAll(t, resp)
				want := tc.status
				if want == 503 && path == "/v1/embeddings" {
					want = 502
				}
				if resp.StatusCode != want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, want, body)
				}
				envelopeOf(t, path, body)
			})
		}
	}
}
