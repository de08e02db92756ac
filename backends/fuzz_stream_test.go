package backends_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/tsrouter/config"
)

type nopFlusher struct{}

func (nopFlusher) Flush() error { return nil }

// echoSSE serves the request body back as an event stream: the fuzz input
// travels as the upstream request and returns as the serve's stream.
func echoSSE(f *testing.F) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write(b)
	}))
	f.Cleanup(srv.Close)
	return srv.URL
}

func fuzzTier(f *testing.F, url, dialect string) *backends.Tier {
	cfg, err := config.Parse("t.toml", []byte(`
[router]
[[router.tiers]]
id = "t"
base_url = "`+url+`"
dialect = "`+dialect+`"
context_limit = 4096
privacy = "local"
tool_support = true
model = "m"
timeout = 2.0
auth_env = "T_KEY"
[router.model_routes]
chat = "t"
`))
	if err != nil {
		f.Fatal(err)
	}
	set, err := backends.New(cfg.Backends(), backends.Options{LookupEnv: func(string) string { return "" }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(set.CloseIdle)
	tier, _ := set.Lookup("chat")
	return tier
}

// FuzzOpenAIStream: any byte stream from an OpenAI-dialect serve is either
// refused before the 200 (a classified Error) or relayed to the end with
// a result, never a panic or a hang.
func FuzzOpenAIStream(f *testing.F) {
	for _, s := range []string{
		"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
		": keep-alive\n\ndata:{\"model\" : \"m\",\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\r\n\r\n",
		"data: {\"error\":{\"message\":\"queue full\",\"code\":503}}\n\n",
		"data: {\"choices\":[]}\ndata: {\"more\":1}\n\n",
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\n\ndata: [DONE]\n\n",
		"event: x\ndata\n\n",
	} {
		f.Add([]byte(s))
	}
	tier := fuzzTier(f, echoSSE(f), "openai")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := tier.OpenStream(t.Context(), data)
		if err != nil {
			if _, ok := err.(*backends.Error); !ok {
				t.Fatalf("unclassified error %T %v", err, err)
			}
			return
		}
		defer s.Close()
		backends.RelayOpenAI(io.Discard, nopFlusher{}, s, []byte(`"chat"`))
		s.Usage()
	})
}

// FuzzAnthropicStream is FuzzOpenAIStream for Anthropic Messages events.
func FuzzAnthropicStream(f *testing.F) {
	for _, s := range []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":2}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
		"event: ping\ndata: {\"type\":\"ping\"}\n\n",
		"data: {\"type\":\"message_start\"}\n\n",
	} {
		f.Add([]byte(s))
	}
	tier := fuzzTier(f, echoSSE(f), "anthropic")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := tier.OpenStream(t.Context(), data)
		if err != nil {
			if _, ok := err.(*backends.Error); !ok {
				t.Fatalf("unclassified error %T %v", err, err)
			}
			return
		}
		defer s.Close()
		backends.RelayAnthropic(io.Discard, nopFlusher{}, s, []byte(`"chat"`))
	})
}
