package backends_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// TestReadinessIsCached: a probe result is kept for
// availability_probe_interval — for chat tiers (health_path) and for the
// purpose and audio rows of /v1/health/tiers (GET /v1/models) — and
// carries when it was taken. (The stamp used to be set on a copy, so the
// cache never hit and every request probed.)
func TestReadinessIsCached(t *testing.T) {
	var health, models atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			health.Add(1)
		case "/v1/models":
			models.Add(1)
			if r.Header.Get("Authorization") != "" {
				t.Error("a readiness probe of a purpose or audio serve sent a key")
			}
		}
	}))
	defer srv.Close()
	cfg, err := config.Parse("t.toml", []byte(`
[router]
availability_probe_interval = 3600
availability_probe_background = false
[[router.tiers]]
id = "t"
base_url = "`+srv.URL+`"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "T_KEY"
model = "m"
health_path = "/health"
[router.model_routes]
chat = "t"
[[router.purpose_models]]
id = "emb"
kind = "embedding"
model = "e"
base_url = "`+srv.URL+`/v1"
auth_env = "E_KEY"
[[router.audio_routes]]
id = "stt"
purpose = "stt"
model = "w"
base_url = "`+srv.URL+`/v1"
auth_env = "E_KEY"
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "key" }})
	if err != nil {
		t.Fatal(err)
	}
	defer set.CloseIdle()
	tier, _ := set.Lookup("chat")
	checks := []struct {
		name  string
		check func() backends.Readiness
		hits  *atomic.Int64
	}{
		{"chat tier", tier.Readiness, &health},
		{"purpose model", set.Purposes()[0].Readiness, &models},
		{"audio route", set.AudioRoutes()[0].Readiness, &models},
	}
	for _, c := range checks {
		before := c.hits.Load()
		first, second := c.check(), c.check()
		if !first.Available || first.CheckedAt.IsZero() || first.Latency <= 0 {
			t.Errorf("%s: %+v, want available with a check time and latency", c.name, first)
		}
		if second.CheckedAt != first.CheckedAt || c.hits.Load()-before != 1 {
			t.Errorf("%s: %d probes for two checks within the interval, want 1", c.name, c.hits.Load()-before)
		}
	}
}
