package backends_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

// tierKey is the tier's own upstream key in this test: only lowercase
// letters, a shape the word rules alone would let through.
const tierKey = "abcdefghijklmnopq"

func rejectingTier(t *testing.T, message string) *backends.Tier {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message, "type": "BadRequestError", "code": 400}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	cfg, err := config.Parse("t.toml", []byte(`
[router]
[[router.tiers]]
id = "t"
base_url = "`+srv.URL+`"
dialect = "openai"
context_limit = 4096
privacy = "local"
tool_support = true
auth_env = "T_KEY"
model = "m"
[router.model_routes]
chat = "t"
`))
	if err != nil {
		t.Fatal(err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return tierKey }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.CloseIdle)
	tier, _ := set.Lookup("chat")
	return tier
}

// TestServeMessagesPassOnlyWhenSafe: the serve's 4xx message reaches the
// caller only when every word has a shape that cannot carry a location or
// a secret; the crafted messages below each try one way to leak.
func TestServeMessagesPassOnlyWhenSafe(t *testing.T) {
	const fallback = "model upstream rejected the request"
	leaks := []struct{ name, msg string }{
		{"host and port", "could not reach vllm-internal.corp:8000"},
		{"bare internal host", "upstream vllm.default.svc.cluster.local refused"},
		{"IPv4", "bad request from 10.20.30.40"},
		{"IPv6 bracketed", "listener [fd7a:115c:a1e0::1]:8000 busy"},
		{"IPv6 bare", "peer fe80::1ff:fe23:4567:890a rejected"},
		{"URL", "see http://docs.internal/errors for details"},
		{"unix path", "failed in /opt/vllm/entrypoints/openai/serving_chat.py line 12"},
		{"relative path", "cannot open models/llama/tokenizer.json"},
		{"windows path", `cannot open C:\models\llama`},
		{"tier key", "invalid key " + tierKey},
		{"hugging face token", "token hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345678 rejected"},
		{"github token", "ghp_1234567890abcdefghijklmnopqrstuvwxyzAB is not allowed"},
		{"AWS access key", "credentials AKIAIOSFODNN7EXAMPLE expired"},
		{"JWT", "bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
		{"OpenAI-style key", "Incorrect API key provided: sk-proj-abc123"},
		{"e-mail", "quota of admin@corp.example exceeded"},
		{"stack trace", "Traceback (most recent call last):\n  File \"/usr/lib/python3/x.py\""},
		{"long lowercase run", "invalid key abcdefghijklmnopqrstuvwxyzabcdef"},
	}
	for _, tc := range leaks {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			_, err := rejectingTier(t, tc.msg).Complete(t.Context(), []byte(`{}`))
			be, ok := err.(*backends.Error)
			if !ok || be.Kind != backends.Rejected || be.Status != 400 {
				t.Fatalf("err %#v", err)
			}
			if be.Message != fallback {
				t.Errorf("message %q passed on", be.Message)
			}
		})
	}
	safe := []string{
		"This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion). Please reduce the length of the messages or completion.",
		"max_tokens must be at least 1, got 0.",
		"temperature must be at least 0, got -1.5.",
		"Input too long",
		"The prompt is too long: 9000 tokens, the limit is 8192.",
		"top_p must be in (0, 1], got 1.2.",
		"Invalid JSON body",
		"prompt is too long",
		"prompt is too long: 208000 tokens > 200000 maximum",
	}
	for _, msg := range safe {
		t.Run("passed/"+msg[:min(len(msg), 30)], func(t *testing.T) {
			_, err := rejectingTier(t, msg).Complete(t.Context(), []byte(`{}`))
			be, ok := err.(*backends.Error)
			if !ok || be.Message != fallback+": "+msg {
				t.Errorf("message %#v, want %q passed on", err, msg)
			}
		})
	}
}
