package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// The SIGHUP reload of [guardrails]: a good table replaces the engine, a
// table whose providers do not build keeps the running one.
func TestReloadGuardrails(t *testing.T) {
	base := `
[router]
[[router.tiers]]
id = "a"
base_url = "http://127.0.0.1:9"
dialect = "openai"
context_limit = 4096
privacy = "local"
model = "m"
tool_support = false
auth_env = "NO_SUCH_KEY_ENV"
[router.model_routes]
chat = "a"
`
	parse := func(gr string) *config.Config {
		cfg, err := config.Parse("t.toml", []byte(base+gr))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	set, err := backends.New(parse("").Backends(), backends.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := tsrouter.New(tsrouter.Options{Backends: set, Logger: log, Token: policy.NewToken("reload-token-0123456789")})
	t.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer reload-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	view := func() string { return get("/admin/guardrails") }

	reloadGuardrails(h, parse(`
[guardrails]
enabled = true
[[guardrails.providers]]
name = "first"
type = "pii"
`), log)
	if v := view(); !strings.Contains(v, `"name":"first"`) {
		t.Fatalf("not reloaded: %s", v)
	}
	reloadGuardrails(h, parse(brokenRules("second")), log)
	if v := view(); !strings.Contains(v, `"name":"first"`) || !strings.Contains(logs.String(), "previous ones stay in force") {
		t.Errorf("a bad table replaced the running one: %s\n%s", v, logs.String())
	}
	reloadGuardrails(h, parse(""), log)
	if v := view(); !strings.Contains(v, `"enabled":false`) {
		t.Errorf("not turned off: %s", v)
	}

	// The whole reload: what took effect is what /admin/config shows; a
	// section that did not load shows as it runs.
	running := parse("")
	running = applyReload(h, running, parse(`
[guardrails]
enabled = true
[[guardrails.providers]]
name = "third"
type = "pii"
`), log)
	if v := get("/admin/config"); !strings.Contains(v, `"third"`) {
		t.Errorf("/admin/config does not show the reloaded guardrails: %s", v)
	}
	applyReload(h, running, parse(brokenRules("broken")), log)
	if v := get("/admin/config"); !strings.Contains(v, `"third"`) || strings.Contains(v, `"broken"`) {
		t.Errorf("/admin/config shows a table that did not load: %s", v)
	}
}

// brokenRules is a [guardrails] table whose rules provider name does not
// build (its pattern is not a regular expression).
func brokenRules(name string) string {
	return `
[guardrails]
enabled = true
[[guardrails.providers]]
name = "` + name + `"
type = "rules"
[[guardrails.providers.options.rules]]
name = "r"
pattern = "("
action = "block"
`
}
