package tsrouter_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
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

	// The Anthropic path enforces the same key policy, with x-api-key as
	// Anthropic clients send it, and answers in the Anthropic envelope.
	for model, want := range map[string]int{"fast": 200, "chat": 403} {
		resp := post(t, t.Context(), blocking+"/v1/messages", `{"model":"`+model+`","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}`, "X-Api-Key", partnerKey)
		body := readAll(t, resp)
		if resp.StatusCode != want || (want == 403 && !strings.Contains(body, `"type":"error"`)) {
			t.Errorf("/v1/messages %s with a key limited to local-b: %d %s", model, resp.StatusCode, body)
		}
	}
	resp := post(t, t.Context(), blocking+"/v1/messages", `{"model":"fast","max_tokens":8,"messages":[]}`)
	if body := readAll(t, resp); resp.StatusCode != 401 || !strings.Contains(body, `"type":"error"`) {
		t.Errorf("/v1/messages without a key in blocking mode: %d %s", resp.StatusCode, body)
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
		if want == 429 && (resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Should-Retry") != "") {
			t.Errorf("429 must say how long to wait and leave retrying to the client: Retry-After %q, X-Should-Retry %q",
				resp.Header.Get("Retry-After"), resp.Header.Get("X-Should-Retry"))
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
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
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

// TestAdminKeyAPI: the admin API creates, shows (masked), updates with
// the seed's allowed_backends semantics, disables, rotates and deletes
// runtime keys; they persist as digests only and survive a restart; every
// operation is audited by key id, never by key.
func TestAdminKeyAPI(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	store := filepath.Join(t.TempDir(), "keys.json")
	cfg := keysConfig(url, "blocking")
	var logs syncBuffer
	h := newHandler(t, cfg, routerOpts{token: routerToken, adminToken: "admin-secret-0123456789", keyStore: store, env: map[string]string{"PARTNER_KEY": partnerKey}},
		slog.New(slog.NewJSONHandler(&logs, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()
	call := func(method, path, body string, hdr ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.Unmarshal([]byte(readAll(t, resp)), &out)
		return resp.StatusCode, out
	}
	admin := []string{"X-Api-Key", routerToken, "X-Admin-Token", "admin-secret-0123456789"}
	chatWith := func(key, model string) int {
		s, _ := call("POST", "/v1/chat/completions", `{"model":"`+model+`"}`, "Authorization", "Bearer "+key, "X-Api-Key", routerToken)
		return s
	}

	if s, _ := call("GET", "/admin/api-keys", "", "X-Api-Key", routerToken); s != 403 {
		t.Errorf("without the admin token: %d, want 403", s)
	}
	s, created := call("POST", "/admin/api-keys", `{"id":"ci-bot","user_id":"ci","organization_id":"org","scopes":["read","write"],"allowed_backends":["local-b"]}`, admin...)
	secret, _ := created["key"].(string)
	if s != 201 || !strings.HasPrefix(secret, "sk-anvil-") {
		t.Fatalf("create: %d %v", s, created)
	}
	if c := chatWith(secret, "fast"); c != 200 {
		t.Errorf("new key on its backend: %d", c)
	}
	if c := chatWith(secret, "chat"); c != 403 {
		t.Errorf("new key off its backend: %d", c)
	}
	_, got := call("GET", "/admin/api-keys/ci-bot", "", admin...)
	if got["key"] == secret || !strings.HasPrefix(got["key"].(string), "sk-***") {
		t.Errorf("get shows %v, want masked", got["key"])
	}
	// Update: absent allowed_backends keeps the list, [] clears it.
	call("PUT", "/admin/api-keys/ci-bot", `{"name":"renamed"}`, admin...)
	if c := chatWith(secret, "chat"); c != 403 {
		t.Errorf("absent allowed_backends changed the list: %d", c)
	}
	call("PUT", "/admin/api-keys/ci-bot", `{"allowed_backends":[]}`, admin...)
	if c := chatWith(secret, "chat"); c != 200 {
		t.Errorf("[] should clear the restriction: %d", c)
	}
	call("POST", "/admin/api-keys/ci-bot/disable", "", admin...)
	if c := chatWith(secret, "chat"); c != 401 {
		t.Errorf("disabled key: %d", c)
	}
	call("POST", "/admin/api-keys/ci-bot/enable", "", admin...)
	_, rotated := call("POST", "/admin/api-keys/ci-bot/rotate", "", admin...)
	newSecret, _ := rotated["key"].(string)
	if chatWith(secret, "chat") != 401 || chatWith(newSecret, "chat") != 200 {
		t.Errorf("rotate: old key must stop, new key must work")
	}
	if s, _ := call("DELETE", "/admin/api-keys/key-partner-1", "", admin...); s != 409 {
		t.Errorf("deleting a config key: %d, want 409", s)
	}
	raw, _ := os.ReadFile(store)
	if strings.Contains(string(raw), newSecret) || strings.Contains(string(raw), secret) || !strings.Contains(string(raw), "ci-bot") {
		t.Errorf("store content: %s", raw)
	}
	// A restart (a new ring on the same store) keeps the runtime key.
	h2 := newHandler(t, cfg, routerOpts{token: routerToken, keyStore: store, env: map[string]string{"PARTNER_KEY": partnerKey}}, nil)
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	resp := post(t, t.Context(), srv2.URL+"/v1/chat/completions", `{"model":"chat"}`, "Authorization", "Bearer "+newSecret, "X-Api-Key", routerToken)
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("runtime key after restart: %d", resp.StatusCode)
	}
	if s, _ := call("DELETE", "/admin/api-keys/ci-bot", "", admin...); s != 200 || chatWith(newSecret, "chat") != 401 {
		t.Errorf("delete: %d", s)
	}
	audit := logs.String()
	for _, op := range []string{"api key create ci-bot", "api key rotate ci-bot", "api key disable ci-bot"} {
		if !strings.Contains(audit, op) {
			t.Errorf("audit lacks %q", op)
		}
	}
	if strings.Contains(audit, secret) || strings.Contains(audit, newSecret) {
		t.Error("a key appears in the logs")
	}
}

// TestKeyMatrix: mode × key state × endpoint, as the seed specifies it.
func TestKeyMatrix(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	env := map[string]string{"PARTNER_KEY": partnerKey}
	bases := map[string]string{
		"permissive": startRouter(t, keysConfig(url, "permissive"), routerOpts{env: env}),
		"blocking":   startRouter(t, keysConfig(url, "blocking"), routerOpts{env: env}),
	}
	keys := map[string]string{"none": "", "unknown": "sk-unknown-0123456789abcdef", "valid": partnerKey, "expired": expiredKey, "disabled": offKey, "read-only": readerKey}
	type endpoint struct{ method, path, body string }
	chat := endpoint{"POST", "/v1/chat/completions", `{"model":"fast"}`}
	models := endpoint{"GET", "/v1/models", ""}
	caps := endpoint{"GET", "/v1/models/capabilities", ""}
	health := endpoint{"GET", "/healthz", ""}
	// want[mode][key][endpoint]
	want := map[string]map[string]map[endpoint]int{
		"permissive": {
			"none":      {chat: 200, models: 200, caps: 200, health: 200},
			"unknown":   {chat: 200, models: 200, caps: 200, health: 200},
			"valid":     {chat: 200, models: 200, caps: 200, health: 200},
			"expired":   {chat: 401, models: 401, caps: 401, health: 200},
			"disabled":  {chat: 401, models: 401, caps: 401, health: 200},
			"read-only": {chat: 403, models: 200, caps: 200, health: 200},
		},
		"blocking": {
			"none":      {chat: 401, models: 401, caps: 200, health: 200},
			"unknown":   {chat: 401, models: 401, caps: 200, health: 200},
			"valid":     {chat: 200, models: 200, caps: 200, health: 200},
			"expired":   {chat: 401, models: 401, caps: 401, health: 200},
			"disabled":  {chat: 401, models: 401, caps: 401, health: 200},
			"read-only": {chat: 403, models: 200, caps: 200, health: 200},
		},
	}
	for mode, byKey := range want {
		for state, byEP := range byKey {
			for ep, code := range byEP {
				t.Run(mode+"/"+state+ep.path, func(t *testing.T) {
					var hdr []string
					if k := keys[state]; k != "" {
						hdr = []string{"Authorization", "Bearer " + k}
					}
					req, _ := http.NewRequestWithContext(t.Context(), ep.method, bases[mode]+ep.path, strings.NewReader(ep.body))
					for i := 0; i+1 < len(hdr); i += 2 {
						req.Header.Set(hdr[i], hdr[i+1])
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					if body := readAll(t, resp); resp.StatusCode != code {
						t.Errorf("%d, want %d: %s", resp.StatusCode, code, body)
					}
				})
			}
		}
	}
}

// TestKeyConfigReload: a re-read [api_keys] section (as on SIGHUP) changes
// the mode and inline keys without a restart; a bad one changes nothing.
func TestKeyConfigReload(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	kr := newKeyRingForTest(t, oneTier(url, "")+"\n[api_keys]\nmode = \"permissive\"\n")
	status := func(hdr ...string) int {
		resp := post(t, t.Context(), kr.base+"/v1/chat/completions", `{"model":"chat"}`, hdr...)
		readAll(t, resp)
		return resp.StatusCode
	}
	if s := status(); s != 200 {
		t.Fatalf("permissive, no key: %d", s)
	}
	next, err := config.Parse("t.toml", []byte(oneTier(url, "")+`
[api_keys]
mode = "blocking"
[[api_keys.api_keys]]
key = "`+readerKey+`"
id = "k"
user_id = "u"
organization_id = "o"
scopes = ["read", "write"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := kr.ring.UpdateConfig(next.APIKeys); err != nil {
		t.Fatal(err)
	}
	if s := status(); s != 401 {
		t.Errorf("after switching to blocking: %d, want 401", s)
	}
	if s := status("Authorization", "Bearer "+readerKey); s != 200 {
		t.Errorf("new inline key: %d", s)
	}
	bad := next.APIKeys
	bad.Inline = append(bad.Inline, policy.KeyRecord{Key: "short", ID: "x"})
	bad.Mode = "permissive"
	if err := kr.ring.UpdateConfig(bad); err == nil {
		t.Error("a bad key section was accepted")
	}
	if s := status(); s != 401 {
		t.Errorf("a rejected reload changed the mode: %d", s)
	}
}

// TestRevokedKeysAreRefused: a key the router knew and that was rotated
// away or deleted is 401 in every mode — in permissive mode it used to
// pass as an anonymous caller, free of its restrictions — and stays
// refused after a restart.
func TestRevokedKeysAreRefused(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	store := filepath.Join(t.TempDir(), "state", "keys.json")
	opts := routerOpts{keyStore: store, adminToken: "admin-0123456789abcdef", env: map[string]string{"PARTNER_KEY": partnerKey}}
	base := startRouter(t, keysConfig(url, "permissive"), opts)
	admin := []string{"X-Admin-Token", "admin-0123456789abcdef"}
	call := func(base, method, path, body string, hdr ...string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), method, base+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		json.Unmarshal([]byte(readAll(t, resp)), &v)
		return resp.StatusCode, v
	}
	chat := func(base, key string) int {
		status, _ := call(base, "POST", "/v1/chat/completions", `{"model":"chat"}`, "Authorization", "Bearer "+key)
		return status
	}
	status, created := call(base, "POST", "/admin/api-keys", `{"id":"bot","user_id":"u","organization_id":"o","scopes":["write"],"allowed_backends":["local-b"]}`, admin...)
	if status != 201 {
		t.Fatalf("create: %d %v", status, created)
	}
	first := created["key"].(string)
	if got := chat(base, first); got != 403 {
		t.Fatalf("the key is restricted to local-b: chat gave %d", got)
	}
	_, rotated := call(base, "POST", "/admin/api-keys/bot/rotate", "", admin...)
	second := rotated["key"].(string)
	if got := chat(base, first); got != 401 {
		t.Errorf("the rotated-away key: %d, want 401 (not an anonymous 200)", got)
	}
	if status, _ := call(base, "DELETE", "/admin/api-keys/bot", "", admin...); status != 200 {
		t.Fatalf("delete: %d", status)
	}
	if got := chat(base, second); got != 401 {
		t.Errorf("the deleted key: %d, want 401", got)
	}
	if got := chat(base, "sk-never-issued-0123456789abcdef"); got != 200 {
		t.Errorf("an unknown key in permissive mode: %d, want 200", got)
	}
	// A restart reads the revocations back.
	again := startRouter(t, keysConfig(url, "permissive"), opts)
	for _, key := range []string{first, second} {
		if got := chat(again, key); got != 401 {
			t.Errorf("after a restart, a revoked key: %d, want 401", got)
		}
	}
	data, _ := os.ReadFile(state.RevokedPath(store))
	if strings.Contains(string(data), first) || strings.Contains(string(data), second) {
		t.Error("the revoked list holds a key, not its digest")
	}
}
