package config_test

import (
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
		{"own prefix", "[webui]\npath_prefix = \"/admin/ui\"\n", config.WebUI{Enabled: true, PathPrefix: "/admin/ui"}},
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
