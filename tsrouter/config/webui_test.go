package config_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestWebUI: [webui] defaults to enabled at /webui; path_prefix must start
// with / and must not contain "..".
func TestWebUI(t *testing.T) {
	good := []struct {
		name, table string
		want        config.WebUI
	}{
		{"absent", "", config.WebUI{Enabled: true, PathPrefix: "/webui"}},
		{"empty table", "[webui]\n", config.WebUI{Enabled: true, PathPrefix: "/webui"}},
		{"disabled", "[webui]\nenabled = false\n", config.WebUI{Enabled: false, PathPrefix: "/webui"}},
		{"own prefix", "[webui]\npath_prefix = \"/console/ui\"\n", config.WebUI{Enabled: true, PathPrefix: "/console/ui"}},
		{"trailing slash trimmed", "[webui]\npath_prefix = \"/ui/\"\n", config.WebUI{Enabled: true, PathPrefix: "/ui"}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			cfg := mustParse(t, doc("", tierLines(), tc.table))
			if cfg.WebUI != tc.want {
				t.Errorf("WebUI = %+v, want %+v", cfg.WebUI, tc.want)
			}
		})
	}
	bad := []struct {
		name, line, msg string
	}{
		{"relative", `path_prefix = "webui"`, "must start with /"},
		{"dot dot", `path_prefix = "/a/../b"`, "must not contain .."},
		{"dot dot at end", `path_prefix = "/webui/.."`, "must not contain .."},
		{"root", `path_prefix = "/"`, "must not be /"},
		{"wildcard", `path_prefix = "/{x}"`, "plain path"},
		{"query", `path_prefix = "/ui?x=1"`, "plain path"},
		{"double slash", `path_prefix = "//evil.example"`, "plain path"},
		{"under the API", `path_prefix = "/v1/ui"`, "the API's paths"},
		{"not a string", `path_prefix = 1`, "must be a string"},
		{"enabled not bool", `enabled = "yes"`, "true or false"},
		{"unknown key", `theme = "dark"`, ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			key := "webui." + strings.Fields(tc.line)[0]
			expectProblems(t, doc("", tierLines(), "[webui]\n"+tc.line+"\n"), []want{{key: key, at: tc.line, msg: tc.msg}})
		})
	}
}

// TestViewHidesSecrets: the admin view of the config names the variables
// that hold secrets and never shows a literal key, URL userinfo or a
// free-form value.
func TestViewHidesSecrets(t *testing.T) {
	text := doc("", tierLines("base_url", `"http://user:hunter2@127.0.0.1:8001/v1?token=qs-secret"`, "extra_body", `{ api_token = "eb-secret" }`), `
[api_keys]
api_keys = [
  { key = "sk-literal-secret-value-123", id = "lit", scopes = ["read"] },
  { key = "${KEY_FROM_ENV}", id = "env", scopes = ["read"] },
]
[admin]
auth_env = "ADMIN_TOKEN_VAR"
`)
	cfg := mustParse(t, text)
	b, err := json.Marshal(cfg.View())
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, secret := range []string{"hunter2", "qs-secret", "eb-secret", "sk-literal-secret-value-123"} {
		if strings.Contains(got, secret) {
			t.Errorf("view shows %q: %s", secret, got)
		}
	}
	for _, name := range []string{"T1_TOKEN", "ADMIN_TOKEN_VAR", "${KEY_FROM_ENV}", "(literal, hidden)", `"extra_body_keys":["api_token"]`} {
		if !strings.Contains(got, name) {
			t.Errorf("view lacks %q: %s", name, got)
		}
	}
}
