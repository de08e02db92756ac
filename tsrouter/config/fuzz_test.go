package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// FuzzParse: any bytes give a config or an error, never a panic, and a
// config that parses can be summarised.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("[server]\nlocal_listen = \"127.0.0.1:8080\"\nlocal_api = true\nauth_env = \"T\"\n"))
	f.Add([]byte("[router]\n[[router.tiers]]\nid = \"a\"\nbase_url = \"http://127.0.0.1:8001\"\ndialect = \"openai\"\ncontext_limit = 8192\nprivacy = \"local\"\ntool_support = true\nmodel = \"m\"\nextra_body = { temperature = 0.1 }\n[router.model_routes]\nchat = \"a\"\n"))
	f.Add([]byte("[tailnet]\nhostname = \"anvil\"\nadvertise_tags = [\"tag:anvil\"]\n[api_keys]\nmode = \"blocking\"\n[[api_keys.keys]]\nid = \"k\"\nkey = \"${K}\"\nscopes = [\"read\"]\n"))
	f.Add([]byte("a = [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.toml", data)
		if err != nil {
			return
		}
		_ = cfg.Summary()
	})
}
