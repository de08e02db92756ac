package tsrouter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// guardServe is a Llama Guard serve on loopback, reached by the router
// like any other tier: "unsafe\nS1" when the conversation mentions
// "detonate", "safe" otherwise.
func guardServe(t *testing.T, calls *atomic.Int64) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		verdict := "safe"
		if strings.Contains(string(body), "detonate") {
			verdict = "unsafe\nS1"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "g", "object": "chat.completion", "model": "guard-served",
			"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
				"message": map[string]any{"role": "assistant", "content": verdict}}},
		})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// A hook that refuses prompts naming project "bluebird" and rewrites
// "colour" to "color"; when broken it answers 500.
func hookServe(t *testing.T, broken *atomic.Bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if broken.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		var req struct {
			Texts []struct{ Text string } `json:"texts"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		out := make([]string, len(req.Texts))
		action := "allow"
		for i, tx := range req.Texts {
			out[i] = tx.Text
			switch {
			case strings.Contains(tx.Text, "bluebird"):
				action = "block"
			case strings.Contains(tx.Text, "colour"):
				out[i] = strings.ReplaceAll(tx.Text, "colour", "color")
				if action == "allow" {
					action = "modify"
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"action": action, "category": "dangerous", "message": "internal project", "texts": out})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// withGuardTier adds to cfg (oneTier's) a tier "guard" at guardURL, with
// the tier lines extra, served as alias "llama-guard".
func withGuardTier(cfg, guardURL, extra string) string {
	cfg = strings.Replace(cfg, "llm.primary = \"local-a\"\n", "llm.primary = \"local-a\"\nllama-guard = \"guard\"\n", 1)
	return cfg + `
[[router.tiers]]
id = "guard"
base_url = "` + guardURL + `"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = false
auth_env = "SERVE_A_KEY"
model = "guard-served"
` + extra + `
`
}

// guardModelTOML is a [guardrails] table with one fail_closed Llama Guard
// provider name on stage, asking alias model.
func guardModelTOML(name, stage, model string) string {
	return `
[guardrails]
enabled = true

[[guardrails.providers]]
name = "` + name + `"
type = "guard_model"
stages = ["` + stage + `"]
on_error = "fail_closed"
[guardrails.providers.options]
model = "` + model + `"
format = "llama_guard"
`
}

// webhookTOML is one fail_closed webhook provider name on stage, at url
// (after a [guardrails] table).
func webhookTOML(name, stage, url string) string {
	return `
[[guardrails.providers]]
name = "` + name + `"
type = "webhook"
stages = ["` + stage + `"]
on_error = "fail_closed"
[guardrails.providers.options]
url = "` + url + `"
timeout = "10s"
`
}

// serveGuarded serves a router of cfg (router token, the tier key) on
// loopback and returns its URL.
func serveGuarded(t *testing.T, cfg string) string {
	t.Helper()
	srv := httptest.NewServer(newHandler(t, cfg, routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tierKey}}, nil))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The model-based providers, configured in TOML and reached over real
// HTTP: the guard model through the router's own tier, the webhook on
// loopback, each with its on_error.
func TestGuardrailsModelProvidersThroughTheRouter(t *testing.T) {
	var guardCalls atomic.Int64
	var hookBroken atomic.Bool
	guardURL := guardServe(t, &guardCalls)
	hookURL := hookServe(t, &hookBroken)
	fake, url := startFake(t, fakeserve.Options{APIKey: tierKey})
	cfg := withGuardTier(oneTier(url, ""), guardURL, "") + guardModelTOML("llama-guard", "input", "llama-guard") + webhookTOML("hook", "input", hookURL)
	base := serveGuarded(t, cfg)
	chat := func(text string) *http.Response {
		body := `{"model":"chat","messages":[{"role":"user","content":` + strings.TrimSpace(mustJSON(text)) + `}]}`
		return post(t, t.Context(), base+"/v1/chat/completions", body, "Authorization", "Bearer "+routerToken)
	}
	// A judgement of the text is final (400, no retry); a fail_closed
	// provider that failed judged nothing, so the caller is told to come
	// back (503 with Retry-After), which is the truth.
	cases := []struct {
		name, prompt string
		broken       bool
		status       int
		errType      string
		want         string
		retryAfter   string
	}{
		{"both allow, the hook rewrites", "what colour is the sky", false, 200, "", "", ""},
		{"the guard model blocks", "how do I detonate it", false, 400, "guardrail_blocked", `llama-guard`, ""},
		{"the hook blocks", "status of bluebird", false, 400, "guardrail_blocked", `hook`, ""},
		{"a broken hook fails closed, retryable", "hello", true, 503, "guardrail_unavailable", `hook`, "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hookBroken.Store(tc.broken)
			before := fake.Stats().Requests
			resp := chat(tc.prompt)
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				if sent := string(fake.LastRequest().Body); !strings.Contains(sent, "color") || strings.Contains(sent, "colour") {
					t.Errorf("the hook's modification did not reach the serve: %s", sent)
				}
				return
			}
			if !strings.Contains(body, `"type":"`+tc.errType+`"`) || !strings.Contains(body, tc.want) {
				t.Errorf("body %s: want %s naming %s", body, tc.errType, tc.want)
			}
			if strings.Contains(body, tc.prompt) {
				t.Errorf("the refusal quotes the prompt: %s", body)
			}
			if fake.Stats().Requests != before {
				t.Errorf("a refused prompt reached the serve")
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if got, want := resp.Header.Get("X-Should-Retry"), map[bool]string{true: "", false: "false"}[tc.status == 503]; got != want {
				t.Errorf("X-Should-Retry %q, want %q", got, want)
			}
		})
	}
	if guardCalls.Load() == 0 {
		t.Error("the guard model was never asked")
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// A serve that sends reasoning beside an empty content in one delta
// (Ollama's shape; some vLLM and SGLang builds do the same): the
// reasoning is gated like any text, never passed through as it came.
func TestGuardrailsReasoningBesideContent(t *testing.T) {
	serve := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, delta := range []string{
			`{"role":"assistant","content":"","reasoning_content":"mail root@corp.example.com first"}`,
			`{"content":"","reasoning":"then ssn-free bob@corp.example.com"}`,
			`{"content":"Done."}`,
		} {
			fmt.Fprintf(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}\n\n", delta)
		}
		fmt.Fprint(w, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(serve.Close)
	h := newHandler(t, oneTier(serve.URL, "")+guardPII, routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tierKey}}, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp := post(t, t.Context(), srv.URL+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`, "Authorization", "Bearer "+routerToken)
	body := readAll(t, resp)
	if strings.Contains(body, "corp.example.com") {
		t.Errorf("reasoning leaked unmasked:\n%s", body)
	}
	if strings.Count(body, "REDACTED:EMAIL") != 2 || !strings.Contains(body, "Done.") {
		t.Errorf("want both addresses masked and the answer whole:\n%s", body)
	}
}

// A fail_closed output provider that fails while an answer streams: the
// caller gets the dialect's error event typed guardrail_unavailable (not
// guardrail_blocked: nothing was judged), no clean end, and none of the
// answer the provider never passed.
func TestGuardrailsOutputProviderFailsClosedMidStream(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	hookURL := hookServe(t, &broken)
	gr := "\n[guardrails]\nenabled = true\noutput_check = \"window\"\n" + webhookTOML("hook", "output", hookURL)
	for _, tc := range []struct {
		dialect, path, body, errorEvent, cleanEnd string
	}{
		{"openai", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`, `data: {"error":{"type":"guardrail_unavailable"`, "[DONE]"},
		{"anthropic", "/v1/messages", `{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":true}`, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"guardrail_unavailable\"", "message_stop"},
	} {
		t.Run(tc.dialect+tc.path, func(t *testing.T) {
			_, url := guardedRouter(t, tc.dialect, gr, fakeserve.Options{Deltas: []string{"never ", "judged"}}, nil)
			body := readAll(t, post(t, t.Context(), url+tc.path, tc.body, openaiAuth...))
			if !strings.Contains(body, tc.errorEvent) || strings.Contains(body, tc.cleanEnd) {
				t.Errorf("stream did not end with the guardrail_unavailable event:\n%s", body)
			}
			if strings.Contains(answerText(body), "judged") {
				t.Errorf("text the provider never passed reached the caller:\n%s", body)
			}
		})
	}
}

// An output provider sees the conversation as the input stage left it:
// what the pii provider masked in the prompt never reaches a webhook (or
// guard model), on a translated or passthrough path, streamed or not.
func TestGuardrailsOutputProviderSeesTheMaskedPrompt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"action":"allow"}`)
	}))
	t.Cleanup(hook.Close)
	gr := `
[guardrails]
enabled = true

[[guardrails.providers]]
name = "pii-redaction"
type = "pii"
stages = ["input"]

[[guardrails.providers]]
name = "hook"
type = "webhook"
stages = ["output"]
[guardrails.providers.options]
url = "` + hook.URL + `"
`
	for _, dialect := range []string{"openai", "anthropic"} {
		_, url := guardedRouter(t, dialect, gr, fakeserve.Options{Deltas: []string{"fine"}}, nil)
		for name, tc := range guardCases(false) {
			if name == "completions" && dialect == "anthropic" {
				continue
			}
			for _, stream := range []bool{false, true} {
				t.Run(dialect+"/"+name+"/stream="+strconv.FormatBool(stream), func(t *testing.T) {
					mu.Lock()
					seen = nil
					mu.Unlock()
					body := tc.body
					if stream {
						body = strings.Replace(body, `"stream":false`, `"stream":true`, 1)
					}
					resp := post(t, t.Context(), url+tc.path, body, openaiAuth...)
					if out := readAll(t, resp); resp.StatusCode != 200 {
						t.Fatalf("status %d: %s", resp.StatusCode, out)
					}
					mu.Lock()
					defer mu.Unlock()
					if len(seen) == 0 {
						t.Fatal("the output hook was never called")
					}
					for _, s := range seen {
						if strings.Contains(s, promptSecret) || !strings.Contains(s, "REDACTED:EMAIL") {
							t.Errorf("the output hook got the prompt unmasked: %s", s)
						}
					}
				})
			}
		}
	}
}

// Guard model calls are admitted like callers' requests: with the guard
// tier's max_concurrency = 1, checks of requests in flight together reach
// its serve one at a time.
func TestGuardModelCallsRespectTheTierLimit(t *testing.T) {
	var inFlight, peak atomic.Int64
	guard := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		io.Copy(io.Discard, r.Body)
		time.Sleep(50 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"g","object":"chat.completion","model":"guard-served","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"safe"}}]}`)
	}))
	t.Cleanup(guard.Close)
	_, url := startFake(t, fakeserve.Options{APIKey: tierKey})
	cfg := withGuardTier(oneTier(url, ""), guard.URL, "max_concurrency = 1") + guardModelTOML("llama-guard", "input", "llama-guard")
	base := serveGuarded(t, cfg)
	var wg sync.WaitGroup
	statuses := make([]int, 4)
	for i := range statuses {
		wg.Go(func() {
			resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`, "Authorization", "Bearer "+routerToken)
			readAll(t, resp)
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("the guard serve had %d checks in flight at once; its tier allows 1", p)
	}
}

// An output guard model served by the tier that answered runs under the
// request's own slot: with max_concurrency = 1 it does not wait for a
// second slot (which would never come) until queue_timeout.
func TestGuardModelOnTheAnsweringTier(t *testing.T) {
	serve := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"g","object":"chat.completion","model":"served-model","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"safe"}}]}`)
	}))
	t.Cleanup(serve.Close)
	cfg := oneTier(serve.URL, "max_concurrency = 1") + guardModelTOML("self-guard", "output", "chat")
	cfg = strings.Replace(cfg, "relay_timeout = 2.0", "relay_timeout = 2.0\nqueue_timeout = 1.0", 1)
	base := serveGuarded(t, cfg)
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hello"}]}`, "Authorization", "Bearer "+routerToken)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("status %d: %s (the output check waited for a slot its own request holds)", resp.StatusCode, body)
	}
}

// A caller that hangs up while a fail_closed provider is still checking
// its prompt is recorded as gone, not as a guardrail failure.
func TestGuardrailsCallerGoneMidCheck(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then net/http notices the router hang up
		<-r.Context().Done()        // never answers while anyone waits
	}))
	t.Cleanup(hook.Close)
	logs := &syncBuffer{}
	fake, url := guardedRouter(t, "openai", "\n[guardrails]\nenabled = true\n"+webhookTOML("slow-hook", "input", hook.URL), fakeserve.Options{},
		slog.New(slog.NewJSONHandler(logs, nil)))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hello"}]}`))
	for i := 0; i+1 < len(openaiAuth); i += 2 {
		req.Header.Set(openaiAuth[i], openaiAuth[i+1])
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the request was answered (%d) while the hook never answered", resp.StatusCode)
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "client disconnected during the input guardrail check"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no client_disconnected record:\n%s", logs.String())
		}
	}
	if strings.Contains(logs.String(), "guardrail_unavailable") {
		t.Errorf("recorded as a guardrail failure:\n%s", logs.String())
	}
	if fake.Stats().Requests != 0 {
		t.Error("the unchecked prompt reached the serve")
	}
}
