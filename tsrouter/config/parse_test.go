package config_test

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

func TestLoadLocalOperatorFile(t *testing.T) {
	cfg, err := config.Load("testdata/anvil-router.local.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Path != "testdata/anvil-router.local.toml" {
		t.Errorf("Path = %q", cfg.Path)
	}
	wantServer := config.Server{
		AuthEnv:            "ANVIL_ROUTER_TOKEN",
		AdmissionStatePath: "/var/lib/anvil/admission.json",
		DecisionLogPath:    "/var/log/anvil/decisions.jsonl",
	}
	if cfg.Server != wantServer {
		t.Errorf("Server = %+v, want %+v", cfg.Server, wantServer)
	}

	r := cfg.Router
	if r.RelayTimeout != 30*time.Second || r.AvailabilityProbeInterval != 2500*time.Millisecond {
		t.Errorf("relay_timeout %v, probe interval %v", r.RelayTimeout, r.AvailabilityProbeInterval)
	}
	wantRoutes := []config.Route{
		{Alias: "llm.primary", TierID: "qwen-a"},
		{Alias: "llm.fast", TierID: "qwen-fast"},
		{Alias: "default", TierID: "qwen-a"},
		{Alias: "qwen3-32b", TierID: "qwen-a"},
	}
	if !reflect.DeepEqual(r.Routes, wantRoutes) {
		t.Errorf("Routes = %+v\nwant %+v", r.Routes, wantRoutes)
	}

	if len(r.Tiers) != 2 {
		t.Fatalf("%d tiers, want 2", len(r.Tiers))
	}
	a := r.Tiers[0]
	if a.ID != "qwen-a" || a.Model != "Qwen/Qwen3-32B-AWQ" || a.Timeout != 45500*time.Millisecond ||
		a.MaxConcurrency != 8 || a.MaxOutputTokens != 8192 || a.HealthPath != "/health" ||
		!a.ModelIdentity || !a.ToolSupport || a.Engine != "vllm" || a.Quantization != "awq" {
		t.Errorf("tier qwen-a = %+v", a)
	}
	wantExtra := map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": false}}
	if !reflect.DeepEqual(a.ExtraBody, wantExtra) {
		t.Errorf("ExtraBody = %#v", a.ExtraBody)
	}
	capacity, _ := a.Params["capacity"].(map[string]any)
	if capacity["gpu_role"] != "primary" || capacity["kv_cache_capacity_tokens"] != int64(180000) {
		t.Errorf("params.capacity = %#v", capacity)
	}
	if _, ok := a.Params["capabilities"].(map[string]any); !ok {
		t.Errorf("params.capabilities missing: %#v", a.Params)
	}
	fast := cfg.TierByID("qwen-fast")
	if fast == nil || fast.Model != "" || fast.ToolSupport || fast.Timeout != 0 ||
		fast.ExtraBodyDefaults["temperature"] != 0.7 {
		t.Errorf("tier qwen-fast = %+v", fast)
	}
	if role := fast.Params["capacity"].(map[string]any)["gpu_role"]; role != "secondary" {
		t.Errorf("second tier's params.capacity.gpu_role = %v (sub-table attached to the wrong tier?)", role)
	}

	if len(r.PurposeModels) != 2 || r.PurposeModels[1].Timeout != 10*time.Second || r.PurposeModels[1].AuthEnv != "RERANK_TOKEN" {
		t.Errorf("PurposeModels = %+v", r.PurposeModels)
	}
	defaults := map[string]bool{}
	for _, ar := range r.AudioRoutes {
		defaults[ar.ID] = ar.Default
	}
	if want := map[string]bool{"whisper": true, "kokoro": true, "piper": false}; !reflect.DeepEqual(defaults, want) {
		t.Errorf("audio defaults = %v, want %v (a lone stt route is implicitly default)", defaults, want)
	}
	if !cfg.RequiresAuth() {
		t.Error("RequiresAuth() = false with audio routes configured")
	}
}

func TestScaffoldIgnoresForeignKeys(t *testing.T) {
	cfg, err := config.Load("testdata/scaffold.toml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if cfg.Server.AuthEnv != "" {
		t.Errorf("auth_env = %q, want none", cfg.Server.AuthEnv)
	}
	// Audio routes without [server].auth_env parse fine; startup refuses.
	if !cfg.RequiresAuth() {
		t.Error("RequiresAuth() = false")
	}
	r := cfg.Router
	checks := []struct {
		name      string
		got, want any
	}{
		{"exhaustion_status", r.ExhaustionStatus, 503},
		{"exhaustion_retry_after", r.ExhaustionRetryAfter, 120 * time.Second},
		{"relay_timeout", r.RelayTimeout, 20 * time.Second},
		{"availability_probe_interval", r.AvailabilityProbeInterval, 5 * time.Second},
		{"availability_probe_timeout", r.AvailabilityProbeTimeout, time.Second},
		{"availability_probe_max_bytes", r.AvailabilityProbeMaxBytes, 65536},
		{"audio_max_input_bytes", r.AudioMaxInputBytes, 4 << 20},
		{"audio_max_output_bytes", r.AudioMaxOutputBytes, 4 << 20},
		{"audio_max_text_chars", r.AudioMaxTextChars, 16384},
		{"audio_max_concurrency", r.AudioMaxConcurrency, 4},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("default = %v, want %v", c.got, c.want)
			}
		})
	}
}

func TestThreeMistakesThreeProblems(t *testing.T) {
	_, err := config.Load("testdata/three-mistakes.toml")
	got := problemsOf(t, err)
	want := []config.Problem{
		{Line: 5, Key: "router.relay_timeout", Msg: "must be a number of seconds > 0, got 0"},
		{Line: 9, Key: "router.tiers[0].base_url", Msg: "must start with http:// or https://"},
		{Line: 18, Key: `router.model_routes.fast`, Msg: `routes to "qwen-b", which is not a tier id`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("problems:\n%v\nwant %+v", err, want)
	}
	wantText := "testdata/three-mistakes.toml:5: router.relay_timeout: must be a number of seconds > 0, got 0\n" +
		"testdata/three-mistakes.toml:9: router.tiers[0].base_url: must start with http:// or https://\n" +
		"testdata/three-mistakes.toml:18: router.model_routes.fast: routes to \"qwen-b\", which is not a tier id"
	if err.Error() != wantText {
		t.Errorf("Error() =\n%s\nwant\n%s", err, wantText)
	}
}

func TestErrorRendering(t *testing.T) {
	cases := []struct {
		name string
		err  config.Error
		want string
	}{
		{"line and key", config.Error{File: "r.toml", Problems: []config.Problem{{Line: 3, Key: "router.x", Msg: "bad"}}}, "r.toml:3: router.x: bad"},
		{"no line", config.Error{File: "r.toml", Problems: []config.Problem{{Key: "router", Msg: "missing"}}}, "r.toml: router: missing"},
		{"no key", config.Error{File: "r.toml", Problems: []config.Problem{{Line: 2, Msg: "syntax"}}}, "r.toml:2: syntax"},
		{"no file", config.Error{Problems: []config.Problem{{Line: 1, Key: "k", Msg: "m"}}}, "<config>:1: k: m"},
		{"several", config.Error{File: "f", Problems: []config.Problem{{Line: 1, Key: "a", Msg: "x"}, {Line: 2, Key: "b", Msg: "y"}}}, "f:1: a: x\nf:2: b: y"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.err.Error(); got != c.want {
				t.Errorf("Error() = %q, want %q", got, c.want)
			}
		})
	}
}

func TestSyntaxErrors(t *testing.T) {
	cases := []struct {
		name, text string
		line       int
		key        string
	}{
		{"missing value", "[router]\nrelay_timeout =\n", 2, ""},
		{"duplicate key", "[router]\nrelay_timeout = 1\nrelay_timeout = 2\n", 3, "relay_timeout"},
		{"unclosed table header", "[server]\nauth_env = \"X\"\n\n[router\n", 4, ""},
		{"integer overflow", "[router]\n\nexhaustion_status = 99999999999999999999\n", 3, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse("bad.toml", []byte(c.text))
			ps := problemsOf(t, err)
			if len(ps) != 1 {
				t.Fatalf("got %d problems: %v", len(ps), err)
			}
			if ps[0].Line != c.line || !strings.HasPrefix(ps[0].Msg, "invalid TOML: ") {
				t.Errorf("problem = %+v, want line %d and an invalid TOML message", ps[0], c.line)
			}
			if c.key != "" && !strings.HasSuffix(ps[0].Key, c.key) {
				t.Errorf("key = %q, want suffix %q", ps[0].Key, c.key)
			}
		})
	}
}

func TestLoadFailures(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.toml")
		_, err := config.Load(path)
		ps := problemsOf(t, err)
		if len(ps) != 1 || !strings.Contains(ps[0].Msg, "cannot read config") {
			t.Errorf("problems = %+v", ps)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
		}
		if !strings.HasPrefix(err.Error(), path+": ") {
			t.Errorf("error %q does not start with the path", err)
		}
	})
	t.Run("tilde expanded", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("HOME", home)
		data, err := os.ReadFile("testdata/scaffold.toml")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, "router.toml"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load("~/router.toml")
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.Path != filepath.Join(home, "router.toml") {
			t.Errorf("Path = %q", cfg.Path)
		}
	})
}

func TestTopLevelTables(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		wants []want
	}{
		{"router missing", "[server]\nauth_env = \"T\"\n", []want{{"router", "", "required table is missing"}}},
		{"router not a table", "router = 1\n", []want{{"router", "router = 1", "must be a table, got integer"}}},
		{"server not a table", "server = \"x\"\n" + doc("", tierLines(), ""), []want{{"server", "server = ", "must be a table"}}},
		{"router tiers missing", "[router]\n[router.model_routes]\na = \"t1\"\n", []want{
			{"router.tiers", "[router]", "at least one"},
			{`router.model_routes.a`, "a = ", "not a tier id"},
		}},
		{"router tiers empty", "[router]\ntiers = []\n[router.model_routes]\n", []want{
			{"router.tiers", "tiers = []", "[router].tiers is empty"},
			{"router.model_routes", "[router.model_routes]", "at least one alias"},
		}},
		{"tiers element not a table", "[router]\ntiers = [1]\nmodel_routes = {}\n", []want{
			{"router.tiers[0]", "tiers = [1]", "must be a table, got integer"},
			{"router.model_routes", "model_routes = {}", "at least one alias"},
		}},
		{"model_routes missing", "[router]\n[[router.tiers]]\n" + tierLines(), []want{
			{"router.model_routes", "[router]", "must map at least one alias"},
		}},
		{"foreign tables ignored", "claude_logs = 1\n[edge]\nx = 1\n[webui]\nenabled = true\n" + doc("", tierLines(), ""), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, c.text, c.wants) })
	}
}

func TestServerTable(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		wants []want
	}{
		{"all keys", "auth_env = \"ANVIL_ROUTER_TOKEN\"\nadmission_state_path = \"/a\"\ndecision_log_path = \"/b\"\n", nil},
		{"empty table", "", nil},
		{"unknown keys each reported", "auth_env = \"T\"\ntoken = \"x\"\nport = 8000\n", []want{
			{"server.port", "port = ", "unknown field in [server]"},
			{"server.token", "token = ", "unknown field in [server]"},
		}},
		{"auth_env lower case", "auth_env = \"anvil_token\"\n", []want{{"server.auth_env", "auth_env", "NAME of an environment variable"}}},
		{"auth_env empty", "auth_env = \"\"\n", []want{{"server.auth_env", "auth_env", "NAME"}}},
		{"auth_env not a string", "auth_env = 5\n", []want{{"server.auth_env", "auth_env", "must be a string, got integer"}}},
		{"admission_state_path empty", "admission_state_path = \"  \"\n", []want{{"server.admission_state_path", "admission", "non-empty"}}},
		{"decision_log_path wrong type", "decision_log_path = true\n", []want{{"server.decision_log_path", "decision", "must be a string, got boolean"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectProblems(t, "[server]\n"+c.body+"\n"+doc("", tierLines(), ""), c.wants)
		})
	}
}

func TestServerPathsExpandHome(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	cfg := mustParse(t, "[server]\nadmission_state_path = \"~/state/admission.json\"\ndecision_log_path = \"~/log.jsonl\"\n"+doc("", tierLines(), ""))
	if want := filepath.Join(home, "state/admission.json"); cfg.Server.AdmissionStatePath != want {
		t.Errorf("AdmissionStatePath = %q, want %q", cfg.Server.AdmissionStatePath, want)
	}
	if want := filepath.Join(home, "log.jsonl"); cfg.Server.DecisionLogPath != want {
		t.Errorf("DecisionLogPath = %q, want %q", cfg.Server.DecisionLogPath, want)
	}
}

func TestRouterScalars(t *testing.T) {
	cases := []struct {
		name  string
		line  string
		wants []want
		check func(config.Router) bool
	}{
		{"exhaustion_status set", "exhaustion_status = 424", nil, func(r config.Router) bool { return r.ExhaustionStatus == 424 }},
		{"exhaustion_status low", "exhaustion_status = 99", []want{{"router.exhaustion_status", "exhaustion", "between 100 and 599, got 99"}}, nil},
		{"exhaustion_status high", "exhaustion_status = 600", []want{{"router.exhaustion_status", "exhaustion", "between 100 and 599"}}, nil},
		{"exhaustion_status bool", "exhaustion_status = true", []want{{"router.exhaustion_status", "exhaustion", "must be an integer, got boolean"}}, nil},
		{"exhaustion_status float", "exhaustion_status = 503.0", []want{{"router.exhaustion_status", "exhaustion", "must be an integer, got float"}}, nil},
		{"exhaustion_retry_after set", "exhaustion_retry_after = 30", nil, func(r config.Router) bool { return r.ExhaustionRetryAfter == 30*time.Second }},
		{"hosted_tools drop", `hosted_tools = "drop"`, nil, func(r config.Router) bool { return !r.RefuseHostedTools }},
		{"hosted_tools refuse", `hosted_tools = "refuse"`, nil, func(r config.Router) bool { return r.RefuseHostedTools }},
		{"hosted_tools other", `hosted_tools = "run"`, []want{{"router.hosted_tools", "hosted_tools", `"drop" or "refuse"`}}, nil},
		{"exhaustion_retry_after zero", "exhaustion_retry_after = 0", []want{{"router.exhaustion_retry_after", "exhaustion_retry_after", "> 0"}}, nil},
		{"relay_timeout int", "relay_timeout = 7", nil, func(r config.Router) bool { return r.RelayTimeout == 7*time.Second }},
		{"relay_timeout fraction", "relay_timeout = 0.25", nil, func(r config.Router) bool { return r.RelayTimeout == 250*time.Millisecond }},
		{"relay_timeout negative", "relay_timeout = -1", []want{{"router.relay_timeout", "relay", "> 0"}}, nil},
		{"relay_timeout inf", "relay_timeout = inf", []want{{"router.relay_timeout", "relay", "finite"}}, nil},
		{"relay_timeout nan", "relay_timeout = nan", []want{{"router.relay_timeout", "relay", "> 0"}}, nil},
		{"relay_timeout bool", "relay_timeout = false", []want{{"router.relay_timeout", "relay", "must be a number, got boolean"}}, nil},
		{"relay_timeout string", "relay_timeout = \"20s\"", []want{{"router.relay_timeout", "relay", "must be a number, got string"}}, nil},
		{"probe interval inf clamps", "availability_probe_interval = inf", nil, func(r config.Router) bool {
			return r.AvailabilityProbeInterval == time.Duration(math.MaxInt64)
		}},
		{"probe interval zero", "availability_probe_interval = 0", []want{{"router.availability_probe_interval", "interval", "> 0"}}, nil},
		{"probe timeout", "availability_probe_timeout = 0.5", nil, func(r config.Router) bool { return r.AvailabilityProbeTimeout == 500*time.Millisecond }},
		{"probe timeout zero", "availability_probe_timeout = 0.0", []want{{"router.availability_probe_timeout", "probe_timeout", "> 0"}}, nil},
		{"probe max bytes bounds", "availability_probe_max_bytes = 256", nil, func(r config.Router) bool { return r.AvailabilityProbeMaxBytes == 256 }},
		{"probe max bytes low", "availability_probe_max_bytes = 255", []want{{"router.availability_probe_max_bytes", "max_bytes", "between 256 and 1048576"}}, nil},
		{"probe max bytes high", "availability_probe_max_bytes = 1048577", []want{{"router.availability_probe_max_bytes", "max_bytes", "between 256 and 1048576"}}, nil},
		{"audio input max", "audio_max_input_bytes = 33554432", nil, func(r config.Router) bool { return r.AudioMaxInputBytes == 32<<20 }},
		{"audio input low", "audio_max_input_bytes = 1023", []want{{"router.audio_max_input_bytes", "audio_max", "between 1024 and 33554432"}}, nil},
		{"audio output high", "audio_max_output_bytes = 33554433", []want{{"router.audio_max_output_bytes", "audio_max", "between 1024 and 33554432"}}, nil},
		{"audio text chars", "audio_max_text_chars = 2048", nil, func(r config.Router) bool { return r.AudioMaxTextChars == 2048 }},
		{"audio text chars low", "audio_max_text_chars = 10", []want{{"router.audio_max_text_chars", "audio_max", "between 1024"}}, nil},
		{"audio concurrency", "audio_max_concurrency = 16", nil, func(r config.Router) bool { return r.AudioMaxConcurrency == 16 }},
		{"audio concurrency zero", "audio_max_concurrency = 0", []want{{"router.audio_max_concurrency", "audio_max", "between 1 and 16"}}, nil},
		{"audio concurrency bool", "audio_max_concurrency = true", []want{{"router.audio_max_concurrency", "audio_max", "got boolean"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text := doc(c.line+"\n", tierLines(), "")
			expectProblems(t, text, c.wants)
			if c.check != nil && !c.check(mustParse(t, text).Router) {
				t.Errorf("%s not applied: %+v", c.line, mustParse(t, text).Router)
			}
		})
	}
}

func TestRouterLegacyKeysRejected(t *testing.T) {
	legacy := []string{"mapping_version = 2", "profile_path = \"p\"", "metered_cloud = false",
		"verify_local_min = 1", "transparent_response_model = true", "classifier = {}"}
	text := doc(strings.Join(legacy, "\n")+"\n", tierLines(), "")
	var wants []want
	for _, l := range legacy {
		k, _, _ := strings.Cut(l, " ")
		wants = append(wants, want{"router." + k, l, "unknown field in [router]"})
	}
	expectProblems(t, text, wants)
}

func TestNestedMistakeLines(t *testing.T) {
	_, err := config.Load("testdata/nested-mistakes.toml")
	got := problemsOf(t, err)
	want := []config.Problem{
		{Line: 16, Key: "router.tiers[0].extra_body.chat_template_kwargs.since", Msg: "is not JSON-serialisable (TOML date)"},
		{Line: 31, Key: "router.tiers[1].extra_body_defaults.stop[1]", Msg: "is not JSON-serialisable (TOML time)"},
		{Line: 36, Key: "router.tiers[1].params.fingerprint.built_at", Msg: "is not JSON-serialisable (TOML datetime)"},
		{Line: 50, Key: "router.purpose_models[1].kind", Msg: `must be one of embedding, rerank, got "embeddings"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%v\nwant %+v", err, want)
	}
}
