package tsrouter_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// Embeddings and rerank inputs go through the input stage too.
func TestGuardrailsEmbeddingsInput(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	h := newHandler(t, purposeConfig(url)+guardPII, routerOpts{}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp := post(t, t.Context(), srv.URL+"/v1/embeddings", `{"model":"Qwen/Qwen3-Embedding-0.6B","input":["mail `+promptSecret+`","plain"]}`)
	if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	sent := string(fake.LastRequest().Body)
	if strings.Contains(sent, promptSecret) || !strings.Contains(sent, `"mail <REDACTED:EMAIL>"`) || !strings.Contains(sent, `"plain"`) {
		t.Errorf("the embeddings serve got %s", sent)
	}
	resp = post(t, t.Context(), srv.URL+"/v1/embeddings", `{"model":"Qwen/Qwen3-Embedding-0.6B","input":"ssn 123-45-6789"}`)
	if body := readAll(t, resp); resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "guardrail_blocked") {
		t.Errorf("status %d: %s", resp.StatusCode, body)
	}
}

// A provider with apply = "on_request" runs only for callers whose key
// names it; a key cannot remove a provider that applies to everyone.
func TestGuardrailsAddedByKey(t *testing.T) {
	const strictKey = "sk-anvil-strict-0123456789abcdef"
	// A key naming a provider that does not exist (a typo) is refused:
	// serving it would drop the protection it was given.
	const typoKey = "sk-anvil-typo-0123456789abcdef01"
	fake, url := startFake(t, fakeserve.Options{Deltas: []string{"ok"}})
	cfg := oneTier(url, "") + `
[api_keys]
mode = "blocking"

[[api_keys.api_keys]]
key = "` + strictKey + `"
id = "strict"
user_id = "u1"
organization_id = "o"
scopes = ["read", "write"]
guardrails = ["strict-phones"]

[[api_keys.api_keys]]
key = "` + typoKey + `"
id = "typo"
user_id = "u3"
organization_id = "o"
scopes = ["read", "write"]
guardrails = ["strict-phone"]

[[api_keys.api_keys]]
key = "` + readerKey + `"
id = "plain"
user_id = "u2"
organization_id = "o"
scopes = ["read", "write"]

[guardrails]
enabled = true

[[guardrails.providers]]
name = "words-for-all"
type = "rules"
stages = ["input"]
[[guardrails.providers.options.rules]]
name = "confidential"
keywords = ["confidential"]
action = "mask"

[[guardrails.providers]]
name = "strict-phones"
type = "pii"
apply = "on_request"
stages = ["input"]
`
	h := newHandler(t, cfg, routerOpts{}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	prompt := `{"model":"chat","messages":[{"role":"user","content":"confidential: call 555-123-4567"}]}`
	before := fake.Stats().Requests
	resp := post(t, t.Context(), srv.URL+"/v1/chat/completions", prompt, "Authorization", "Bearer "+typoKey)
	if body := readAll(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `permission_error`) || !strings.Contains(body, `\"strict-phone\"`) {
		t.Errorf("a key naming an unconfigured guardrail: status %d %s, want 403 naming it", resp.StatusCode, body)
	}
	if fake.Stats().Requests != before {
		t.Error("a key naming an unconfigured guardrail reached the serve")
	}
	for _, tc := range []struct {
		key, want, notWant string
	}{
		{strictKey, "<REDACTED:CONFIDENTIAL>: call <REDACTED:PHONE>", "555-123-4567"},
		{readerKey, "<REDACTED:CONFIDENTIAL>: call 555-123-4567", "confidential"},
	} {
		resp := post(t, t.Context(), srv.URL+"/v1/chat/completions", prompt, "Authorization", "Bearer "+tc.key)
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		sent := string(fake.LastRequest().Body)
		if !strings.Contains(sent, tc.want) || strings.Contains(sent, tc.notWant) {
			t.Errorf("key %s: the serve got %s", tc.key[:10], sent)
		}
	}
}

// GET /admin/guardrails: the effective config, secrets masked, and the
// counters.
func TestGuardrailsAdminView(t *testing.T) {
	_, url := guardedRouter(t, "openai", guardPII+`
[[guardrails.providers]]
name = "hook"
type = "webhook"
enabled = false
[guardrails.providers.options]
url = "http://127.0.0.1:9/hook?token=query-secret-value"
secret = "literal-secret-value"
bearer_env = "HOUSE_TOKEN"
`, fakeserve.Options{}, nil)
	readAll(t, post(t, t.Context(), url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"mail `+promptSecret+`"}]}`, openaiAuth...))
	body := fetch(t, url+"/admin/guardrails")
	var v struct {
		Enabled   bool
		Mode      string
		Providers []struct {
			Name    string
			Stages  []string
			Options map[string]any
		}
		Counts []struct {
			Provider, Stage, Verdict, Category string
			Count                              int
		}
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !v.Enabled || v.Mode != "enforce" || len(v.Providers) != 2 || len(v.Providers[0].Stages) != 2 {
		t.Errorf("view %s", body)
	}
	if strings.Contains(body, "literal-secret-value") || strings.Contains(body, "query-secret-value") || !strings.Contains(body, "HOUSE_TOKEN") || strings.Contains(body, promptSecret) {
		t.Errorf("secrets not masked or env names hidden: %s", body)
	}
	found := false
	for _, c := range v.Counts {
		found = found || c.Provider == "pii-redaction" && c.Stage == "input" && c.Verdict == "transform" && c.Count == 1
	}
	if !found {
		t.Errorf("counts %s", body)
	}
}

// The chunk-boundary property over real HTTP: an answer split into two
// frames at every byte, on an OpenAI chat stream and an Anthropic
// passthrough stream — the caller's text is always the masked answer.
func TestGuardrailsStreamEveryBoundary(t *testing.T) {
	const answer = "Mail alice@example.com, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnopqrstuvwx."
	const want = "Mail <REDACTED:EMAIL>, card <REDACTED:CREDIT_CARD>, key <REDACTED:API_KEY>."
	for _, tc := range []struct{ dialect, path, body string }{
		{"openai", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`},
		{"anthropic", "/v1/messages", `{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":true}`},
	} {
		t.Run(tc.dialect, func(t *testing.T) {
			fake, url := guardedRouter(t, tc.dialect, guardPII, fakeserve.Options{}, nil)
			for i := 1; i < len(answer); i++ {
				fake.SetOptions(func(o *fakeserve.Options) { o.Deltas = []string{answer[:i], answer[i:]} })
				body := readAll(t, post(t, t.Context(), url+tc.path, tc.body, openaiAuth...))
				if got := answerText(body); got != want {
					t.Fatalf("split at %d: got %q\n%s", i, got, body)
				}
			}
		})
	}
}

// The text a TTS request speaks goes through the input stage: a blocked
// entity never reaches the speech serve.
func TestGuardrailsSpeechInput(t *testing.T) {
	f := startAudioFakes(t)
	base := startRouter(t, audioTOML(f, audioSetup{})+guardPII, audioRouterOpts())
	status, _, body := audioPost(t, base+"/v1/audio/speech", audioJSON(t, map[string]any{"input": "my ssn is 123-45-6789"}))
	if status != http.StatusBadRequest || !strings.Contains(body, "guardrail_blocked") || strings.Contains(body, "6789") {
		t.Errorf("status %d: %s", status, body)
	}
	if n := f.tts.AudioStats().Speeches; n != 0 {
		t.Errorf("the speech serve was called %d times", n)
	}
	if status, _, body := audioPost(t, base+"/v1/audio/speech", audioJSON(t, map[string]any{"input": "hello there"})); status != http.StatusOK {
		t.Errorf("a clean text: status %d: %s", status, body)
	}
}

// Every text of a conversation is checked: system, user, assistant, tool
// call arguments and tool results, on a Chat and a Messages request.
func TestGuardrailsInputEveryText(t *testing.T) {
	chat := `{"model":"chat","messages":[
{"role":"system","content":"admin is root@corp.example.com"},
{"role":"user","content":[{"type":"text","text":"mail a@b.example.com"}]},
{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":"{\"to\":\"c@d.example.com\"}"}}]},
{"role":"tool","tool_call_id":"c1","content":"sent to e@f.example.com"}]}`
	messages := `{"model":"chat","max_tokens":32,"system":"admin is root@corp.example.com","messages":[
{"role":"user","content":"mail a@b.example.com"},
{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"send","input":{"to":"c@d.example.com"}}]},
{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"sent to e@f.example.com"}]}]}`
	for _, tc := range []struct{ dialect, path, body string }{
		{"openai", "/v1/chat/completions", chat},
		{"anthropic", "/v1/chat/completions", chat},
		{"openai", "/v1/messages", messages},
		{"anthropic", "/v1/messages", messages},
	} {
		t.Run(tc.dialect+tc.path, func(t *testing.T) {
			fake, url := guardedRouter(t, tc.dialect, guardPII, fakeserve.Options{}, nil)
			resp := post(t, t.Context(), url+tc.path, tc.body, openaiAuth...)
			if body := readAll(t, resp); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			sent := string(fake.LastRequest().Body)
			for _, v := range []string{"root@corp.example.com", "a@b.example.com", "c@d.example.com", "e@f.example.com"} {
				if strings.Contains(sent, v) {
					t.Errorf("the serve got %q: %s", v, sent)
				}
			}
			if n := strings.Count(sent, "REDACTED:EMAIL"); n != 4 {
				t.Errorf("%d placeholders: %s", n, sent)
			}
		})
	}
}

// A streamed answer's reasoning is masked like its content.
func TestGuardrailsStreamReasoning(t *testing.T) {
	_, url := guardedRouter(t, "openai", guardPII, fakeserve.Options{
		Reasoning: []string{"the user is ali", "ce@example.com, so"},
		Deltas:    []string{"Hi ", "there."},
	}, nil)
	body := readAll(t, post(t, t.Context(), url+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`, openaiAuth...))
	if strings.Contains(answerText(body), "alice@") || strings.Contains(body, "example.com") {
		t.Errorf("reasoning leaked: %s", body)
	}
	var reasoning strings.Builder
	for _, p := range sseEvents(body) {
		var c struct {
			Choices []struct {
				Delta struct {
					Reasoning string `json:"reasoning"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal([]byte(p), &c) == nil && len(c.Choices) > 0 {
			reasoning.WriteString(c.Choices[0].Delta.Reasoning)
		}
	}
	if reasoning.String() != "the user is <REDACTED:EMAIL>, so" || strings.Index(body, ", so") > strings.Index(body, "there.") {
		t.Errorf("reasoning %q\n%s", reasoning.String(), body)
	}
}
