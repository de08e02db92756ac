package config_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

func TestTierRules(t *testing.T) {
	const tier0 = "router.tiers[0]"
	cases := []struct {
		name  string
		tier  string
		wants []want
	}{
		{"minimal valid", tierLines(), nil},
		{"unknown legacy keys", tierLines("priority", "1", "work_classes", `["chat"]`), []want{
			{tier0 + ".priority", "priority", "unknown field in tier entry"},
			{tier0 + ".work_classes", "work_classes", "unknown field in tier entry"},
		}},
		{"missing required keys", tierLines("privacy", "-", "auth_env", "-"), []want{
			{tier0, "[[router.tiers]]", `tier "t1" missing required keys: privacy, auth_env`},
		}},
		{"missing id", tierLines("id", "-"), []want{
			{tier0, "[[router.tiers]]", "tier router.tiers[0] missing required keys: id"},
			{"router.model_routes.a", "a = ", "not a tier id"},
		}},
		{"empty id", tierLines("id", `""`), []want{
			{tier0 + ".id", "id = ", "non-empty"},
			{"router.model_routes.a", "a = ", "not a tier id"},
		}},
		{"base_url https upper case", tierLines("base_url", `"HTTPS://gpu-box:8443/v1"`), nil},
		{"base_url scheme", tierLines("base_url", `"127.0.0.1:8001"`), []want{{tier0 + ".base_url", "base_url", "must start with http:// or https://"}}},
		{"base_url no host", tierLines("base_url", `"http:///v1"`), []want{{tier0 + ".base_url", "base_url", "host"}}},
		{"base_url type", tierLines("base_url", `8001`), []want{{tier0 + ".base_url", "base_url", "must be a string, got integer"}}},
		{"dialect anthropic", tierLines("dialect", `"anthropic"`), nil},
		{"dialect unknown", tierLines("dialect", `"responses"`), []want{{tier0 + ".dialect", "dialect", `must be "openai" or "anthropic", got "responses"`}}},
		{"dialect case sensitive", tierLines("dialect", `"OpenAI"`), []want{{tier0 + ".dialect", "dialect", "must be"}}},
		{"context_limit zero", tierLines("context_limit", `0`), []want{{tier0 + ".context_limit", "context_limit", "must be > 0, got 0"}}},
		{"context_limit bool", tierLines("context_limit", `true`), []want{{tier0 + ".context_limit", "context_limit", "must be an integer, got boolean"}}},
		{"context_limit float", tierLines("context_limit", `4096.0`), []want{{tier0 + ".context_limit", "context_limit", "got float"}}},
		{"privacy cloud", tierLines("privacy", `"cloud"`), []want{{tier0 + ".privacy", "privacy", `must be "local"`}}},
		{"tool_support string", tierLines("tool_support", `"yes"`), []want{{tier0 + ".tool_support", "tool_support", "must be true or false, got string"}}},
		{"model empty is absent", tierLines("model", `""`), nil},
		{"model type", tierLines("model", `1`), []want{{tier0 + ".model", "model", "must be a string"}}},
		{"engine and quantization types", tierLines("engine", `1`, "quantization", `false`), []want{
			{tier0 + ".engine", "engine", "must be a string"},
			{tier0 + ".quantization", "quantization", "must be a string"},
		}},
		{"extra_body not a table", tierLines("extra_body", `"{}"`), []want{{tier0 + ".extra_body", "extra_body", "must be a table, got string"}}},
		{"extra_body datetime", tierLines("extra_body", `{ metadata = { since = 2024-01-02T03:04:05Z } }`), []want{
			{tier0 + ".extra_body.metadata.since", "extra_body", "not JSON-serialisable (TOML datetime)"},
		}},
		{"extra_body_defaults local date in array", tierLines("extra_body_defaults", `{ stop = ["x", 2024-01-02] }`), []want{
			{tier0 + ".extra_body_defaults.stop[1]", "extra_body_defaults", "not JSON-serialisable (TOML date)"},
		}},
		{"extra_body nan", tierLines("extra_body", `{ temperature = nan }`), []want{
			{tier0 + ".extra_body.temperature", "extra_body", "not JSON-serialisable"},
		}},
		{"params local time", tierLines("params", `{ fingerprint = { built = 07:30:00 } }`), []want{
			{tier0 + ".params.fingerprint.built", "params", "not JSON-serialisable (TOML time)"},
		}},
		{"params not a table", tierLines("params", `[1]`), []want{{tier0 + ".params", "params", "must be a table, got array"}}},
		{"timeout zero", tierLines("timeout", `0`), []want{{tier0 + ".timeout", "timeout", "> 0"}}},
		{"timeout inf", tierLines("timeout", `+inf`), []want{{tier0 + ".timeout", "timeout", "finite"}}},
		{"max_concurrency zero", tierLines("max_concurrency", `0`), []want{{tier0 + ".max_concurrency", "max_concurrency", "> 0"}}},
		{"max_concurrency float", tierLines("max_concurrency", `2.5`), []want{{tier0 + ".max_concurrency", "max_concurrency", "must be an integer"}}},
		{"max_output_tokens equals context", tierLines("max_output_tokens", `4096`), nil},
		{"max_output_tokens above context", tierLines("max_output_tokens", `4097`), []want{{tier0 + ".max_output_tokens", "max_output_tokens", "<= context_limit (4096), got 4097"}}},
		{"max_output_tokens negative", tierLines("max_output_tokens", `-1`), []want{{tier0 + ".max_output_tokens", "max_output_tokens", "> 0"}}},
		{"health_path relative", tierLines("health_path", `"health"`), []want{{tier0 + ".health_path", "health_path", "must start with /"}}},
		{"health_path empty", tierLines("health_path", `""`), []want{{tier0 + ".health_path", "health_path", "must start with /"}}},
		{"health_path scheme relative", tierLines("health_path", `"//evil/health"`), []want{{tier0 + ".health_path", "health_path", "must not start with //"}}},
		{"health_path query", tierLines("health_path", `"/health?x=1"`), []want{{tier0 + ".health_path", "health_path", "? or #"}}},
		{"health_path fragment", tierLines("health_path", `"/health#x"`), []want{{tier0 + ".health_path", "health_path", "? or #"}}},
		{"model_identity complete", tierLines("model_identity", `true`, "model", `"m"`, "health_path", `"/v1/models"`), nil},
		{"model_identity false needs nothing", tierLines("model_identity", `false`), nil},
		{"model_identity lacks model and health_path", tierLines("model_identity", `true`, "model", `""`), []want{
			{tier0 + ".model_identity", "model_identity", "requires a non-empty model, health_path"},
		}},
		{"model_identity type", tierLines("model_identity", `1`), []want{{tier0 + ".model_identity", "model_identity", "must be true or false"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, doc("", c.tier, ""), c.wants) })
	}
}

func TestTierDurationsAndCaps(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines("timeout", "2.5", "max_concurrency", "3", "max_output_tokens", "1024"), ""))
	tier := cfg.TierByID("t1")
	if tier.Timeout != 2500*time.Millisecond || tier.MaxConcurrency != 3 || tier.MaxOutputTokens != 1024 {
		t.Errorf("tier = %+v", tier)
	}
	if cfg.TierByID("nope") != nil {
		t.Error("TierByID(unknown) != nil")
	}
}

func TestTierIDsShareNamespace(t *testing.T) {
	purpose := "[[router.purpose_models]]\nid = \"%s\" # purpose\nkind = \"embedding\"\nmodel = \"e\"\nbase_url = \"http://127.0.0.1:8010/v1\"\n"
	audio := "[[router.audio_routes]]\nid = \"%s\" # audio\npurpose = \"stt\"\nmodel = \"w\"\nbase_url = \"http://127.0.0.1:8020/v1\"\n"
	// Spaced differently so the second tier's id line is findable.
	second := "\n[[router.tiers]]\n" + strings.Replace(tierLines(), `id = "t1"`, `id  =  "t1"`, 1)
	cases := []struct {
		name  string
		text  string
		wants []want
	}{
		{"two tiers same id", "[router]\n[[router.tiers]]\n" + tierLines() + second + "\n[router.model_routes]\na = \"t1\"\n", []want{
			{"router.tiers[1].id", `id  =  "t1"`, `duplicate id "t1" (already used by router.tiers[0])`},
		}},
		{"purpose model reuses tier id", doc("", tierLines(), fmt.Sprintf(purpose, "t1")), []want{
			{"router.purpose_models[0].id", "# purpose", "already used by router.tiers[0]"},
		}},
		{"audio route reuses purpose id", doc("", tierLines(), fmt.Sprintf(purpose, "x")+fmt.Sprintf(audio, "x")), []want{
			{"router.audio_routes[0].id", "# audio", "already used by router.purpose_models[0]"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, c.text, c.wants) })
	}
}

func TestInlineTierArray(t *testing.T) {
	text := `[router]
tiers = [
  { id = "a", base_url = "http://127.0.0.1:1/v1", dialect = "openai", context_limit = 10, privacy = "local", tool_support = true, auth_env = "A" },
  { id = "b", base_url = "http://127.0.0.1:2/v1", dialect = "openai", context_limit = 0, privacy = "local", tool_support = true, auth_env = "B" },
]
model_routes = { a = "a", b = "b" }
`
	expectProblems(t, text, []want{{"router.tiers[1].context_limit", `id = "b"`, "must be > 0"}})
}

func TestAuthEnvNeverEchoed(t *testing.T) {
	secrets := []struct{ name, value string }{
		{"aws key id", "AKIAIOSFODNN7EXAMPLE"},
		{"aws session key id", "ASIAIOSFODNN7EXAMPLE"},
		{"bearer token", "sk-live-9f8e7d6c5b4a39281706"},
		{"hex token", "3f9a0c1d2e4b5a6978877665544332211"},
	}
	for _, s := range secrets {
		t.Run(s.name, func(t *testing.T) {
			text := "[server]\nauth_env = \"" + s.value + "\"\n" + doc("", tierLines("auth_env", `"`+s.value+`"`),
				"[[router.purpose_models]]\nid = \"e\"\nkind = \"embedding\"\nmodel = \"e\"\nbase_url = \"http://127.0.0.1:1/v1\"\nauth_env = \""+s.value+"\"\n"+
					"[[router.audio_routes]]\nid = \"w\"\npurpose = \"stt\"\nmodel = \"w\"\nbase_url = \"http://127.0.0.1:2/v1\"\nauth_env = \""+s.value+"\"\n")
			_, err := config.Parse("s.toml", []byte(text))
			ps := problemsOf(t, err)
			if len(ps) != 4 {
				t.Fatalf("got %d problems, want 4 (server, tier, purpose model, audio route):\n%v", len(ps), err)
			}
			if strings.Contains(err.Error(), s.value) {
				t.Errorf("error text echoes the secret:\n%v", err)
			}
			if strings.HasPrefix(s.value, "AKIA") || strings.HasPrefix(s.value, "ASIA") {
				if !strings.Contains(ps[0].Msg, "AWS access key id") {
					t.Errorf("message %q does not explain the AWS shape", ps[0].Msg)
				}
			}
		})
	}
}
