package backends_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

func newSet(t *testing.T, baseURL, model string) *backends.Set {
	t.Helper()
	toml := `
[router]
[[router.tiers]]
id = "t"
base_url = "` + baseURL + `"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "T_KEY"
model = "` + model + `"
[router.model_routes]
chat = "t"
`
	cfg, err := config.Parse("t.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.CloseIdle)
	return set
}

func modelsServer(t *testing.T, body string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/models" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestResolveModels: a tier without a model adopts the serve's only model;
// zero or several is a start-up error; an unreachable serve only warns.
func TestResolveModels(t *testing.T) {
	_, fakeURL, stop, err := fakeserve.Start(t.Context(), "127.0.0.1:0", fakeserve.Options{Model: "org/the-model"})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	unused, _ := fakeserve.UnusedLoopbackAddr()
	tests := []struct {
		name      string
		url       string
		wantModel string
		wantErr   string
	}{
		{name: "one model is adopted", url: fakeURL + "/v1", wantModel: "org/the-model"},
		{name: "base URL without /v1", url: fakeURL, wantModel: "org/the-model"},
		{name: "no models", url: modelsServer(t, `{"data":[]}`), wantErr: "advertises 0 models"},
		{name: "several models", url: modelsServer(t, `{"data":[{"id":"a"},{"id":"b"}]}`), wantErr: "advertises 2 models"},
		{name: "unreachable serve keeps the caller's model", url: "http://" + unused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set := newSet(t, tc.url, "")
			err := set.ResolveModels(t.Context(), slog.New(slog.DiscardHandler))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tier, _ := set.Lookup("chat")
			if tier.Model != tc.wantModel {
				t.Errorf("model %q, want %q", tier.Model, tc.wantModel)
			}
		})
	}
}

func TestHasToolStructure(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"messages":[{"role":"user","content":"what tools do you have?"}]}`, false},
		{`{"tools":[],"tool_choice":null}`, false},
		{`{"tools":[{"type":"function","function":{"name":"f"}}]}`, true},
		{`{"tool_choice":"auto"}`, true},
		{`{"messages":[{"role":"tool","tool_call_id":"c","content":"42"}]}`, true},
		{`{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, true},
		{`{"messages":[{"role":"assistant","content":"x","tool_calls":[]}]}`, false},
	}
	for _, tc := range tests {
		o, err := jsonobj.Parse([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := backends.HasToolStructure(o); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.body, got, tc.want)
		}
	}
}

// TestUpstreamRejectionMessages: a serve's own 4xx explanation reaches the
// caller only when it cannot carry a location or a secret.
func TestUpstreamRejectionMessages(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"vLLM context length", `{"error":{"message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","code":400}}`, "model upstream rejected the request: This model's maximum context length is 4096 tokens."},
		{"SGLang flat", `{"object":"error","message":"Input too long","type":"BadRequestError","code":400}`, "model upstream rejected the request: Input too long"},
		{"URL inside", `{"error":{"message":"see http://10.0.0.5:8000/docs"}}`, "model upstream rejected the request"},
		{"address inside", `{"error":{"message":"bad request from 127.0.0.1"}}`, "model upstream rejected the request"},
		{"secret-shaped", `{"error":{"message":"invalid api_key sk-abc123"}}`, "model upstream rejected the request"},
		{"file path", `{"error":{"message":"failed in /opt/vllm/entrypoints/x.py"}}`, "model upstream rejected the request"},
		{"not JSON", `<html>bad</html>`, "model upstream rejected the request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(400)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			tier, _ := newSet(t, srv.URL, "m").Lookup("chat")
			_, err := tier.Complete(t.Context(), []byte(`{}`))
			be, ok := err.(*backends.Error)
			if !ok || be.Kind != backends.Rejected || be.Status != 400 {
				t.Fatalf("err %#v", err)
			}
			if be.Message != tc.want {
				t.Errorf("message %q, want %q", be.Message, tc.want)
			}
		})
	}
}

// BenchmarkAdmit is the admission cost on the request path: a readiness
// check served from the probe cache, the quiesce gate, a concurrency slot
// and the lease release.
func BenchmarkAdmit(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	toml := `
[router]
availability_probe_interval = 3600
availability_probe_background = false
[[router.tiers]]
id = "t"
base_url = "` + srv.URL + `"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "T_KEY"
model = "m"
health_path = "/health"
max_concurrency = 64
[router.model_routes]
chat = "t"
`
	cfg, err := config.Parse("t.toml", []byte(toml))
	if err != nil {
		b.Fatal(err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
	if err != nil {
		b.Fatal(err)
	}
	tier, _ := set.Lookup("chat")
	ctx := b.Context()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			l, err := tier.Admit(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
		}
	})
}
