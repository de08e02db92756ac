package tsrouter_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

const (
	partnerKey = "sk-partner-0123456789abcdef"
	readerKey  = "sk-reader-0123456789abcdef"
	expiredKey = "sk-expired-0123456789abcdef"
	offKey     = "sk-disabled-0123456789abcdef"
	limitedKey = "sk-limited-0123456789abcdef"
)

// twoTiers has aliases chat → local-a and fast → local-b, and keys.
func keysConfig(url, mode string) string {
	cfg := oneTier(url, "")
	cfg = strings.Replace(cfg, "[router.model_routes]", `
[[router.tiers]]
id = "local-b"
base_url = "`+url+`"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "SERVE_B_KEY"
model = "served-model"

[router.model_routes]
fast = "local-b"`, 1)
	return cfg + `
[api_keys]
mode = "` + mode + `"

[[api_keys.api_keys]]
key = "${PARTNER_KEY}"
id = "key-partner-1"
user_id = "partner-acme"
organization_id = "org-acme"
scopes = ["read", "write"]
allowed_backends = ["local-b"]

[[api_keys.api_keys]]
key = "` + readerKey + `"
id = "key-reader"
user_id = "u"
organization_id = "o"
scopes = ["read"]

[[api_keys.api_keys]]
key = "` + expiredKey + `"
id = "key-expired"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
expires_at = "2020-01-01T00:00:00Z"

[[api_keys.api_keys]]
key = "` + offKey + `"
id = "key-off"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
enabled = false

[[api_keys.api_keys]]
key = "` + limitedKey + `"
id = "key-limited"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
rate_limit = 3
`
}

func TestAPIKeys(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	env := map[string]string{"PARTNER_KEY": partnerKey}
	blocking := startRouter(t, keysConfig(url, "blocking"), routerOpts{env: env})
	permissive := startRouter(t, keysConfig(url, "permissive"), routerOpts{env: env})
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	tests := []struct {
		name   string
		base   string
		model  string
		hdr    []string
		want   int
		wantIn string
	}{
		{"blocking: no key", blocking, "fast", nil, 401, "authentication_error"},
		{"blocking: unknown key", blocking, "fast", bearer("sk-unknown-0123456789abcdef"), 401, ""},
		{"blocking: key via x-api-key", blocking, "fast", []string{"X-Api-Key", partnerKey}, 200, ""},
		{"allowed backend", blocking, "fast", bearer(partnerKey), 200, ""},
		{"backend outside allowed_backends names the model", blocking, "chat", bearer(partnerKey), 403, `model \"chat\" is not permitted`},
		{"read-only key cannot chat", blocking, "chat", bearer(readerKey), 403, "permission_error"},
		{"expired key", blocking, "chat", bearer(expiredKey), 401, ""},
		{"disabled key", blocking, "chat", bearer(offKey), 401, ""},
		{"permissive: anonymous welcome", permissive, "chat", nil, 200, ""},
		{"permissive: unknown key passes", permissive, "chat", bearer("sk-unknown-0123456789abcdef"), 200, ""},
		{"permissive: a valid key still attaches its policy", permissive, "chat", bearer(partnerKey), 403, ""},
		{"permissive: expired key is refused", permissive, "chat", bearer(expiredKey), 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), tc.base+"/v1/chat/completions", `{"model":"`+tc.model+`"}`, tc.hdr...)
			body := readAll(t, resp)
			if resp.StatusCode != tc.want || !strings.Contains(body, tc.wantIn) {
				t.Errorf("status %d, want %d (%q): %s", resp.StatusCode, tc.want, tc.wantIn, body)
			}
			for _, secret := range []string{partnerKey, readerKey, expiredKey, offKey} {
				if strings.Contains(body, secret) {
					t.Error("a key appears in a response")
				}
			}
		})
	}

	// /v1/models is filtered for a restricted key; /v1/models/{id} of an
	// unreachable model is 404.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", blocking+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+partnerKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ids := modelIDs(t, readAll(t, resp)); len(ids) != 1 || ids[0] != "fast" {
		t.Errorf("/v1/models for a key limited to local-b: %v", ids)
	}
	for id, want := range map[string]int{"fast": 200, "chat": 404, "nope": 404} {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", blocking+"/v1/models/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+partnerKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if readAll(t, resp); resp.StatusCode != want {
			t.Errorf("/v1/models/%s: %d, want %d", id, resp.StatusCode, want)
		}
	}

	// A key's rate_limit is enforced: 3 rpm allows 3, the 4th is 429.
	for i := 1; i <= 4; i++ {
		resp := post(t, t.Context(), blocking+"/v1/chat/completions", `{"model":"chat"}`, bearer(limitedKey)...)
		readAll(t, resp)
		want := map[bool]int{true: 200, false: 429}[i <= 3]
		if resp.StatusCode != want {
			t.Errorf("request %d with a 3 rpm key: %d, want %d", i, resp.StatusCode, want)
		}
		if want == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
}

// TestKeyFileReload: an api_keys_file change applies without a restart; a
// broken file keeps the old keys.
func TestKeyFileReload(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	file := filepath.Join(t.TempDir(), "keys.toml")
	write := func(content string) {
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyFile := func(secret string) string {
		return "[[keys]]\nkey = \"" + secret + "\"\nid = \"k1\"\nuser_id = \"u\"\norganization_id = \"o\"\nscopes = [\"read\", \"write\"]\n"
	}
	write(keyFile(partnerKey))
	cfg := oneTier(url, "") + "\n[api_keys]\nmode = \"blocking\"\napi_keys_file = \"" + file + "\"\n"
	parsed := newKeyRingForTest(t, cfg)
	base := parsed.base
	status := func(key string) int {
		resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat"}`, "Authorization", "Bearer "+key)
		readAll(t, resp)
		return resp.StatusCode
	}
	if s := status(partnerKey); s != 200 {
		t.Fatalf("initial key: %d", s)
	}
	write(keyFile(readerKey))
	parsed.ring.ReloadAndLog("test")
	if s := status(partnerKey); s != 401 {
		t.Errorf("replaced key still accepted: %d", s)
	}
	if s := status(readerKey); s != 200 {
		t.Errorf("new key refused: %d", s)
	}
	write("[[keys]]\nkey = \"short\"\n")
	parsed.ring.ReloadAndLog("test")
	if s := status(readerKey); s != 200 {
		t.Errorf("a broken file dropped the old keys: %d", s)
	}
}

type keyedRouter struct {
	base string
	ring *tsrouter.KeyRing
}

// newKeyRingForTest serves a config with its key ring exposed, so a test
// can trigger reloads as SIGHUP or the file watch would.
func newKeyRingForTest(t *testing.T, toml string) keyedRouter {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	set, err := backends.New(cfg, backends.Options{LookupEnv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := tsrouter.NewKeyRing(cfg.APIKeys, filepath.Join(t.TempDir(), "store.json"), []string{"local-a"},
		func(string) (string, bool) { return "", false }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tsrouter.New(tsrouter.Options{Backends: set, Keys: ring, Logger: slog.New(slog.DiscardHandler)}))
	t.Cleanup(func() { srv.Close(); set.CloseIdle() })
	return keyedRouter{base: srv.URL, ring: ring}
}
