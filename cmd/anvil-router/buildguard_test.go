package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// serve builds its handler with [guardrails] in force from the first
// request (the table goes through Handler.ApplyGuardrails, as in
// anvil-bench's router child), and refuses to start on a table whose
// providers do not build rather than serve without them.
func TestBuildHandlerGuardrails(t *testing.T) {
	t.Setenv("ANVIL_TEST_ROUTER_TOKEN", "build-token-0123456789")
	conf := func(gr string) *config.Config {
		cfg, err := config.Parse("t.toml", []byte(`
[server]
auth_env = "ANVIL_TEST_ROUTER_TOKEN"
[api_keys]
store_path = "`+filepath.Join(t.TempDir(), "keys.json")+`"
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
`+gr))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lim := limits{maxConcurrency: 8, maxBodyBytes: 1 << 20}

	for _, tc := range []struct {
		name, table, want string
	}{
		{name: "off", table: "", want: `"enabled":false`},
		{name: "pii on", table: "[guardrails]\nenabled = true\n[[guardrails.providers]]\nname = \"at-start\"\ntype = \"pii\"\n", want: `"name":"at-start"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, set, err := buildHandler(conf(tc.table), log, lim)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { h.Close(); set.CloseIdle() })
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/admin/guardrails", nil)
			req.Header.Set("Authorization", "Bearer build-token-0123456789")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(b.String(), tc.want) {
				t.Errorf("/admin/guardrails: %d %s, want %s", resp.StatusCode, b.String(), tc.want)
			}
		})
	}

	bad := "[guardrails]\nenabled = true\n[[guardrails.providers]]\nname = \"r\"\ntype = \"rules\"\n[[guardrails.providers.options.rules]]\nname = \"r\"\npattern = \"(\"\naction = \"block\"\n"
	if h, _, err := buildHandler(conf(bad), log, lim); err == nil {
		h.Close()
		t.Error("a [guardrails] table that does not build was accepted")
	}
}
