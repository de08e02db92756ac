package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestAdminStats: [admin.stats] and its persistence table, with the
// seed's defaults and duration formats; unknown keys and bad durations
// are refused.
func TestAdminStats(t *testing.T) {
	const tier = "[[router.tiers]]\nid = \"t1\"\nbase_url = \"http://127.0.0.1:8001/v1\"\ndialect = \"openai\"\ncontext_limit = 4096\nprivacy = \"local\"\ntool_support = true\nauth_env = \"T1\"\n[router.model_routes]\na = \"t1\"\n"
	cases := []struct {
		name    string
		toml    string
		want    config.Stats
		problem string
	}{
		{name: "absent: defaults", toml: "", want: config.DefaultStats()},
		{name: "all set", toml: `
[admin.stats]
enabled = true
retention_window = "7d"
token_tracking = false
[admin.stats.persistence]
enabled = false
path = "/var/lib/anvil/stats.bin"
snapshot_interval = "30s"
max_age = "2d"
`, want: config.Stats{Enabled: true, RetentionWindow: 7 * 24 * time.Hour, Persistence: config.StatsPersistence{
			Path: "/var/lib/anvil/stats.bin", SnapshotInterval: 30 * time.Second, MaxAge: 48 * time.Hour}}},
		{name: "disabled", toml: "[admin.stats]\nenabled = false\n", want: func() config.Stats { s := config.DefaultStats(); s.Enabled = false; return s }()},
		{name: "minutes", toml: "[admin.stats]\nretention_window = \"90m\"\n", want: func() config.Stats { s := config.DefaultStats(); s.RetentionWindow = 90 * time.Minute; return s }()},
		{name: "unknown key", toml: "[admin.stats]\nretention = \"1h\"\n", problem: "unknown field in [admin.stats]"},
		{name: "unknown persistence key", toml: "[admin.stats.persistence]\nfile = \"x\"\n", problem: "unknown field in [admin.stats.persistence]"},
		{name: "bad duration", toml: "[admin.stats]\nretention_window = \"1w\"\n", problem: "must be a duration"},
		{name: "a window past the memory bound", toml: "[admin.stats]\nretention_window = \"401d\"\n", problem: "must be at most 400d"},
		{name: "zero duration", toml: "[admin.stats.persistence]\nmax_age = \"0d\"\n", problem: "must be a duration"},
		{name: "fraction", toml: "[admin.stats.persistence]\nsnapshot_interval = \"1.5h\"\n", problem: "must be a duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("t.toml", []byte(tier+tc.toml))
			if tc.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.problem) {
					t.Fatalf("err = %v, want %q", err, tc.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Admin.Stats != tc.want {
				t.Fatalf("stats = %+v, want %+v", cfg.Admin.Stats, tc.want)
			}
		})
	}
}
