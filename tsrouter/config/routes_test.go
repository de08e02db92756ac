package config_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// twoTiers is a [router] with tiers "a" and "b" and no model_routes yet.
var twoTiers = "[router]\n[[router.tiers]]\n" + tierLines("id", `"a"`) +
	"\n[[router.tiers]] # b\n" + tierLines("id", `"b"`)

func TestModelRoutesOrderAndFlattening(t *testing.T) {
	cases := []struct {
		name   string
		routes string
		want   []string // alias=tier in order
	}{
		{"file order, not sorted", "zeta = \"a\"\nalpha = \"b\"\nmid = \"a\"\n", []string{"zeta=a", "alpha=b", "mid=a"}},
		{"dotted and quoted spellings", "llm.primary = \"a\"\n\"llm.fast\" = \"b\"\nllm.\"tiny\" = \"a\"\n", []string{"llm.primary=a", "llm.fast=b", "llm.tiny=a"}},
		{"interleaved dotted groups", "x.one = \"a\"\ny = \"b\"\nx.two = \"b\"\n", []string{"x.one=a", "y=b", "x.two=b"}},
		{"trim and lowercase", "\"  LLM.Fast \" = \"a\"\nQwen3 = \"b\"\n", []string{"llm.fast=a", "qwen3=b"}},
		{"nested sub-table header", "first = \"a\"\n[router.model_routes.embed]\nsmall = \"b\"\nlarge = \"a\"\n", []string{"first=a", "embed.small=b", "embed.large=a"}},
		{"inline nested table", "group = { z = \"b\", y = \"a\" }\n", []string{"group.z=b", "group.y=a"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := mustParse(t, twoTiers+"\n[router.model_routes]\n"+c.routes)
			var got []string
			for _, r := range cfg.Router.Routes {
				got = append(got, r.Alias+"="+r.TierID)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("routes = %v, want %v", got, c.want)
			}
		})
	}
}

func TestModelRoutesOrderIsStable(t *testing.T) {
	// Map iteration is random: parse many times to catch order leaking
	// from the decoded map.
	var routes strings.Builder
	var want []config.Route
	for _, alias := range strings.Fields("q w e r t y u i o p a s d f g h j k l z x c v b n m") {
		routes.WriteString("grp." + alias + " = \"a\"\n" + alias + " = \"b\"\n")
		want = append(want, config.Route{Alias: "grp." + alias, TierID: "a"}, config.Route{Alias: alias, TierID: "b"})
	}
	text := twoTiers + "\n[router.model_routes]\n" + routes.String()
	for range 20 {
		if got := mustParse(t, text).Router.Routes; !reflect.DeepEqual(got, want) {
			t.Fatalf("routes = %v\nwant %v", got, want)
		}
	}
}

func TestModelRoutesProblems(t *testing.T) {
	cases := []struct {
		name   string
		routes string
		wants  []want
	}{
		{"duplicate after normalisation", "llm = \"a\"\n\"LLM \" = \"b\"\nb = \"b\"\n", []want{
			{`router.model_routes."LLM "`, `"LLM "`, `duplicate alias "llm" after trim and lowercase (first written as "llm" on line`},
		}},
		{"dotted duplicates quoted", "\"llm.primary\" = \"a\"\nllm.primary = \"b\"\nb = \"b\"\n", []want{
			{`router.model_routes."llm.primary"`, "llm.primary = ", "duplicate alias"},
		}},
		{"unknown target", "a = \"a\"\nb = \"b\"\nc = \"gpt-4\"\n", []want{
			{"router.model_routes.c", "c = ", `routes to "gpt-4", which is not a tier id`},
		}},
		{"target not a string", "a = \"a\"\nb = 2\n", []want{
			{"router.model_routes.b", "b = 2", "must be a tier id string, got integer"},
			{"router.tiers[1]", "# b", `tier "b" is unaddressable`},
		}},
		{"empty alias", "a = \"a\"\nb = \"b\"\n\" \" = \"a\"\n", []want{
			{`router.model_routes." "`, `" " = `, "empty"},
		}},
		{"unaddressable tier", "a = \"a\"\nalso.a = \"a\"\n", []want{
			{"router.tiers[1]", "# b", `tier "b" is unaddressable: no alias in [router.model_routes] routes to it`},
		}},
		{"no aliases", "", []want{
			{"router.model_routes", "[router.model_routes]", "at least one alias"},
		}},
		{"only empty groups", "[router.model_routes.llm]\n", []want{
			{"router.model_routes", "[router.model_routes]", "at least one alias"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectProblems(t, twoTiers+"\n[router.model_routes]\n"+c.routes, c.wants)
		})
	}
}

func TestModelRoutesLineOfDottedKey(t *testing.T) {
	text := twoTiers + "\n[router.model_routes]\na = \"a\"\n\n# fast tier\nllm.fast = \"nope\"\nb = \"b\"\n"
	_, err := config.Parse("r.toml", []byte(text))
	ps := problemsOf(t, err)
	if len(ps) != 1 {
		t.Fatalf("problems: %v", err)
	}
	wantLine := lineContaining(t, text, "llm.fast")
	if ps[0].Key != `router.model_routes."llm.fast"` || ps[0].Line != wantLine {
		t.Errorf("problem = %+v, want key router.model_routes.\"llm.fast\" on line %d", ps[0], wantLine)
	}
	if !strings.HasPrefix(err.Error(), "r.toml:") {
		t.Errorf("rendering: %v", err)
	}
}

const pm = "[[router.purpose_models]]\n"

func TestPurposeModels(t *testing.T) {
	embed := pm + "id = \"embed\"\nkind = \"embedding\"\nmodel = \"e5\"\nbase_url = \"http://127.0.0.1:8010/v1\"\n"
	cases := []struct {
		name  string
		rest  string
		wants []want
	}{
		{"valid with options", embed + "auth_env = \"EMBED_TOKEN\"\ntimeout = 3\nfuture_key = 1\n", nil},
		{"rerank", pm + "id = \"r\"\nkind = \"rerank\"\nmodel = \"bge\"\nbase_url = \"https://10.0.0.5/v1\"\n", nil},
		{"same model for both kinds", embed + pm + "id = \"r\"\nkind = \"rerank\"\nmodel = \"e5\"\nbase_url = \"http://127.0.0.1:8011/v1\"\n", nil},
		{"missing keys", pm + "id = \"x\"\n", []want{
			{"router.purpose_models[0].kind", "[[router.purpose_models]]", "is required"},
			{"router.purpose_models[0].model", "[[router.purpose_models]]", "is required"},
			{"router.purpose_models[0].base_url", "[[router.purpose_models]]", "is required"},
		}},
		{"bad kind", pm + "id = \"x\"\nkind = \"chat\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1/v1\"\n", []want{
			{"router.purpose_models[0].kind", "kind = ", `must be one of embedding, rerank, got "chat"`},
		}},
		{"empty model", pm + "id = \"x\"\nkind = \"rerank\"\nmodel = \" \"\nbase_url = \"http://127.0.0.1:1/v1\"\n", []want{
			{"router.purpose_models[0].model", "model = ", "non-empty"},
		}},
		{"bad base_url", pm + "id = \"x\"\nkind = \"rerank\"\nmodel = \"m\"\nbase_url = \"unix:///run/e.sock\"\n", []want{
			{"router.purpose_models[0].base_url", "base_url = \"unix", "http://"},
		}},
		{"bad timeout", embed + "timeout = -2\n", []want{{"router.purpose_models[0].timeout", "timeout", "> 0"}}},
		{"bad auth_env", embed + "auth_env = \"embed-token\"\n", []want{{"router.purpose_models[0].auth_env", "embed-token", "NAME"}}},
		{"duplicate kind and model", embed + pm + "id = \"embed2\"\nkind = \"embedding\"\nmodel = \"e5\" # dup\nbase_url = \"http://127.0.0.1:8011/v1\"\n", []want{
			{"router.purpose_models[1].model", "# dup", `duplicate embedding model "e5" (already served by router.purpose_models[0])`},
		}},
		{"not an array", "[router.purpose_models]\nid = \"x\"\n", []want{
			{"router.purpose_models", "[router.purpose_models]", "must be an array of tables, got table"},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, doc("", tierLines(), c.rest), c.wants) })
	}
}

func TestPurposeModelFields(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines(), pm+"id = \"embed\"\nkind = \"embedding\"\nmodel = \"e5\"\nbase_url = \"http://127.0.0.1:8010/v1\"\nauth_env = \"EMBED_TOKEN\"\ntimeout = 1.5\n"))
	want := []config.PurposeModel{{ID: "embed", Kind: "embedding", Model: "e5", BaseURL: "http://127.0.0.1:8010/v1", AuthEnv: "EMBED_TOKEN", Timeout: 1500 * time.Millisecond}}
	if !reflect.DeepEqual(cfg.Router.PurposeModels, want) {
		t.Errorf("PurposeModels = %+v", cfg.Router.PurposeModels)
	}
	if cfg.RequiresAuth() {
		t.Error("RequiresAuth() = true without audio routes")
	}
}

const ar = "[[router.audio_routes]]\n"

func stt(id, url string) string {
	return ar + "id = \"" + id + "\"\npurpose = \"stt\"\nmodel = \"whisper\"\nbase_url = \"" + url + "\"\n"
}

func tts(id string, extra string) string {
	return ar + "id = \"" + id + "\"\npurpose = \"tts\"\nmodel = \"kokoro\"\nbase_url = \"http://127.0.0.1:8880/v1\"\nsource_sample_rate = 24000\n" + extra
}

func TestAudioRouteHosts(t *testing.T) {
	cases := []struct {
		name, url string
		ok        bool
		msg       string
	}{
		{"literal loopback", "http://127.0.0.1:8020/v1", true, ""},
		{"docker host", "http://host.docker.internal:8020/v1", true, ""},
		{"docker host upper case", "HTTP://Host.Docker.Internal:8020/v1", true, ""},
		{"ten", "http://10.1.2.3:8020/v1", true, ""},
		{"172.16/12 low", "http://172.16.0.1/v1", true, ""},
		{"172.16/12 high", "https://172.31.255.254:443/v1", true, ""},
		{"192.168", "http://192.168.1.20:8020", true, ""},
		{"tailnet cgnat", "http://100.64.0.1:8020/v1", true, ""},
		{"tailnet cgnat top", "http://100.127.255.254:8020/v1", true, ""},
		{"localhost", "http://localhost:8020/v1", false, "host must be"},
		{"other loopback", "http://127.0.0.2:8020/v1", false, "host must be"},
		{"ipv6 loopback", "http://[::1]:8020/v1", false, "host must be"},
		{"mapped private", "http://[::ffff:10.0.0.1]:8020/v1", false, "host must be"},
		{"public ip", "http://8.8.8.8/v1", false, "host must be"},
		{"link local", "http://169.254.169.254/latest", false, "host must be"},
		{"outside 172.16/12", "http://172.32.0.1/v1", false, "host must be"},
		{"outside cgnat", "http://100.128.0.1/v1", false, "host must be"},
		{"hostname", "http://gpu-box.lan:8020/v1", false, "host must be"},
		{"userinfo", "http://user:pw@10.0.0.1:8020/v1", false, "userinfo"},
		{"query", "http://10.0.0.1:8020/v1?x=1", false, "query or fragment"},
		{"fragment", "http://10.0.0.1:8020/v1#x", false, "query or fragment"},
		{"port zero", "http://10.0.0.1:0/v1", false, "port"},
		{"port too big", "http://10.0.0.1:65536/v1", false, "port"},
		{"scheme", "ws://10.0.0.1:8020/v1", false, "http://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var wants []want
			if !c.ok {
				wants = []want{{"router.audio_routes[0].base_url", c.url, c.msg}}
			}
			text := doc("", tierLines(), stt("w", c.url))
			expectProblems(t, text, wants)
			if !c.ok && strings.Contains(problemsOf(t, func() error { _, err := config.Parse("a", []byte(text)); return err }())[0].Msg, c.url) {
				t.Error("message echoes the URL")
			}
		})
	}
}

func TestAudioRouteRules(t *testing.T) {
	const a0 = "router.audio_routes[0]"
	cases := []struct {
		name  string
		rest  string
		wants []want
	}{
		{"stt and tts", stt("w", "http://127.0.0.1:1/v1") + tts("k", ""), nil},
		{"unknown keys allowed", stt("w", "http://127.0.0.1:1/v1") + "language = \"en\"\n", nil},
		{"missing keys", ar + "id = \"x\"\n", []want{
			{a0 + ".purpose", "[[router.audio_routes]]", "is required"},
			{a0 + ".model", "[[router.audio_routes]]", "is required"},
			{a0 + ".base_url", "[[router.audio_routes]]", "is required"},
		}},
		{"bad purpose", ar + "id = \"x\"\npurpose = \"translate\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1/v1\"\n", []want{
			{a0 + ".purpose", "purpose", `must be one of stt, tts, got "translate"`},
		}},
		{"tts without rate", ar + "id = \"k\"\npurpose = \"tts\"\nmodel = \"k\"\nbase_url = \"http://127.0.0.1:1/v1\"\n", []want{
			{a0 + ".source_sample_rate", "[[router.audio_routes]]", "required for tts"},
		}},
		{"stt with rate", stt("w", "http://127.0.0.1:1/v1") + "source_sample_rate = 16000\n", []want{
			{a0 + ".source_sample_rate", "source_sample_rate", "not allowed on stt"},
		}},
		{"rate too low", strings.Replace(tts("k", ""), "24000", "7999", 1), []want{
			{a0 + ".source_sample_rate", "source_sample_rate", "between 8000 and 192000"},
		}},
		{"rate too high", strings.Replace(tts("k", ""), "24000", "192001", 1), []want{
			{a0 + ".source_sample_rate", "source_sample_rate", "between 8000 and 192000"},
		}},
		{"rate bool", strings.Replace(tts("k", ""), "24000", "true", 1), []want{
			{a0 + ".source_sample_rate", "source_sample_rate", "got boolean"},
		}},
		{"bad timeout and auth_env", stt("w", "http://127.0.0.1:1/v1") + "timeout = 0\nauth_env = \"1TOKEN\"\n", []want{
			{a0 + ".timeout", "timeout", "> 0"},
			{a0 + ".auth_env", "1TOKEN", "NAME"},
		}},
		{"default not bool", stt("w", "http://127.0.0.1:1/v1") + "default = \"yes\"\n", []want{
			{a0 + ".default", "default", "must be true or false"},
		}},
		{"two tts none default", tts("k1", "") + tts("k2", ""), []want{
			{"router.audio_routes", "[[router.audio_routes]]", "2 tts routes but none has default = true"},
		}},
		{"two tts one default", tts("k1", "") + tts("k2", "default = true\n"), nil},
		{"three tts two defaults", tts("k1", "default = true\n") + tts("k2", "") + tts("k3", "default = true # again\n"), []want{
			{"router.audio_routes[2].default", "# again", "tts route router.audio_routes[0] already has default = true"},
		}},
		{"defaults per purpose", stt("w1", "http://127.0.0.1:1/v1") + "default = true\n" + stt("w2", "http://127.0.0.1:2/v1") + tts("k", ""), nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectProblems(t, doc("", tierLines(), c.rest), c.wants) })
	}
}

func TestAudioRouteFields(t *testing.T) {
	cfg := mustParse(t, doc("", tierLines(), stt("w", "http://10.0.0.7:9000/v1")+"timeout = 60\nauth_env = \"WHISPER_TOKEN\"\n"+tts("k", "")))
	want := []config.AudioRoute{
		{ID: "w", Purpose: "stt", Model: "whisper", BaseURL: "http://10.0.0.7:9000/v1", Timeout: time.Minute, AuthEnv: "WHISPER_TOKEN", Default: true},
		{ID: "k", Purpose: "tts", Model: "kokoro", BaseURL: "http://127.0.0.1:8880/v1", SourceSampleRate: 24000, Default: true},
	}
	if !reflect.DeepEqual(cfg.Router.AudioRoutes, want) {
		t.Errorf("AudioRoutes = %+v\nwant %+v", cfg.Router.AudioRoutes, want)
	}
}
