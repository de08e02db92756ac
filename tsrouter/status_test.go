package tsrouter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// errorBody is the OpenAI-style error envelope.
type errorBody struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func decodeError(t *testing.T, body string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Type == "" {
		t.Fatalf("not an error envelope: %q (%v)", body, err)
	}
	return e
}

// TestStatusTable is README's status table for requests that fail
// before anything is streamed: each case states what the serve does and what
// the caller must see.
func TestStatusTable(t *testing.T) {
	tests := []struct {
		name     string
		mode     fakeserve.Mode
		refused  bool   // the serve's port has nothing listening
		tierOpts string // extra tier keys
		router   string // extra [router] keys
		body     string
		wantCode int
		wantType string
		wantMsg  string // substring
		maxTime  time.Duration
	}{
		{name: "unknown alias", body: `{"model":"nope","messages":[]}`, wantCode: 404, wantType: "model_not_found"},
		{name: "bad JSON", body: `{"model":`, wantCode: 400, wantType: "invalid_request_error", wantMsg: "bad JSON body"},
		{name: "not an object", body: `[1,2]`, wantCode: 400, wantType: "invalid_request_error", wantMsg: "JSON object"},
		{name: "duplicate top-level key", body: `{"model":"chat","model":"other"}`, wantCode: 400, wantType: "invalid_request_error", wantMsg: "duplicate"},
		{name: "stream as a string", body: `{"model":"chat","stream":"false"}`, wantCode: 400, wantMsg: "stream must be a boolean"},
		{name: "model not a string", body: `{"model":7}`, wantCode: 400, wantMsg: "model must be a string"},
		{name: "connection refused", refused: true, body: `{"model":"chat","stream":true}`, wantCode: 503, wantType: "service_unavailable", maxTime: time.Second},
		{name: "connection refused, non-streaming", refused: true, body: `{"model":"chat"}`, wantCode: 503, wantType: "service_unavailable", maxTime: time.Second},
		{name: "refused with a custom exhaustion status", refused: true, router: "exhaustion_status = 424", body: `{"model":"chat"}`, wantCode: 424, wantType: "service_unavailable"},
		{name: "serve answers 503", mode: fakeserve.ModeStatus503, body: `{"model":"chat","stream":true}`, wantCode: 503, wantType: "service_unavailable"},
		{name: "serve hangs before headers", mode: fakeserve.ModeHang, tierOpts: "timeout = 0.3", body: `{"model":"chat","stream":true}`, wantCode: 503, wantType: "service_unavailable", maxTime: 3 * time.Second},
		{name: "in-band queue-full error as the first event", mode: fakeserve.ModeInbandError, body: `{"model":"chat","stream":true}`, wantCode: 503, wantType: "service_unavailable"},
		{name: "context length exceeded passes through as 400", mode: fakeserve.ModeStatus400, body: `{"model":"chat"}`, wantCode: 400, wantType: "invalid_request_error", wantMsg: "maximum context length"},
		{name: "context length exceeded, streaming", mode: fakeserve.ModeStatus400, body: `{"model":"chat","stream":true}`, wantCode: 400, wantType: "invalid_request_error"},
		{name: "serve 500 is a bad gateway", mode: fakeserve.ModeStatus500, body: `{"model":"chat"}`, wantCode: 502, wantType: "upstream_error"},
		{name: "prompt over the context window", body: `{"model":"small","messages":[{"role":"user","content":"` + strings.Repeat("word ", 100) + `"}]}`, wantCode: 413, wantType: "payload_too_large", wantMsg: "context window"},
		{name: "prompt in content parts over the context window", body: `{"model":"small","messages":[{"role":"user","content":[{"type":"text","text":"` + strings.Repeat("w ", 100) + `"}]}]}`, wantCode: 413, wantType: "payload_too_large"},
		{name: "tools on a tier without tool support", tierOpts: "", body: `{"model":"notools","tools":[{"type":"function","function":{"name":"f"}}]}`, wantCode: 503, wantType: "service_unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, fakeserve.Options{Mode: tc.mode})
			if tc.refused {
				addr, err := fakeserve.UnusedLoopbackAddr()
				if err != nil {
					t.Fatal(err)
				}
				url = "http://" + addr
			}
			cfg := strings.Replace(oneTier(url, tc.tierOpts), "[router]\n", "[router]\n"+tc.router+"\n", 1)
			cfg = strings.Replace(cfg, "[router.model_routes]", `
[[router.tiers]]
id = "no-tools"
base_url = "`+url+`"
dialect = "openai"
context_limit = 8192
privacy = "local"
tool_support = false
auth_env = "SERVE_B_KEY"
model = "served-model"

[[router.tiers]]
id = "small"
base_url = "`+url+`"
dialect = "openai"
context_limit = 64
privacy = "local"
tool_support = true
auth_env = "SERVE_C_KEY"
model = "served-model"

[router.model_routes]
notools = "no-tools"
small = "small"`, 1)
			base := startRouter(t, cfg, routerOpts{})
			start := time.Now()
			resp := post(t, t.Context(), base+"/v1/chat/completions", tc.body)
			body := readAll(t, resp)
			if tc.maxTime > 0 {
				within(t, tc.name, time.Since(start), tc.maxTime)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q: nothing may be streamed on failure", ct)
			}
			e := decodeError(t, body)
			if tc.wantType != "" && e.Error.Type != tc.wantType {
				t.Errorf("type %q, want %q", e.Error.Type, tc.wantType)
			}
			if !strings.Contains(e.Error.Message, tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", e.Error.Message, tc.wantMsg)
			}
			for _, leak := range []string{"127.0.0.1", "local-a", "no-tools", "served-model", "http://"} {
				if strings.Contains(body, leak) {
					t.Errorf("error body leaks %q: %s", leak, body)
				}
			}
			if (tc.wantCode == 413 || tc.wantType == "service_unavailable" && !tc.refused && tc.mode == "") && fake.Stats().Requests != 0 {
				t.Error("the serve was called for a request the tier cannot take")
			}
		})
	}
}

func TestBodyLimits(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{maxBody: 1024})
	big := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`

	resp := post(t, t.Context(), base+"/v1/chat/completions", big)
	body := readAll(t, resp)
	if resp.StatusCode != 413 || decodeError(t, body).Error.Type != "payload_too_large" {
		t.Errorf("over-limit body: %d %s", resp.StatusCode, body)
	}

	// Same over a chunked body (no Content-Length): the cap still holds.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1/chat/completions", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body = readAll(t, resp)
	if resp.StatusCode != 413 {
		t.Errorf("chunked over-limit body: %d %s", resp.StatusCode, body)
	}

	// An empty body is an empty object: the default alias "chat" is routed.
	resp = post(t, t.Context(), base+"/v1/chat/completions", "")
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("empty body: %d %s", resp.StatusCode, body)
	}
}

// TestStreamBreaksAfterCommit: once 200 is sent, a failure must end the
// stream with one error frame and no [DONE], never a clean-looking finish.
func TestStreamBreaksAfterCommit(t *testing.T) {
	tests := []struct {
		name     string
		mode     fakeserve.Mode
		wantDone bool
	}{
		{name: "serve cut mid-stream", mode: fakeserve.ModeCut},
		{name: "in-band error mid-stream", mode: fakeserve.ModeMidstreamError},
		{name: "malformed chunk", mode: fakeserve.ModeMalformed},
		{name: "finished answer without [DONE] is completed", mode: fakeserve.ModeNoDone, wantDone: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, url := startFake(t, fakeserve.Options{Mode: tc.mode})
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":true}`)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			ev := sseEvents(body)
			last := ev[len(ev)-1]
			if tc.wantDone {
				if last != "[DONE]" {
					t.Errorf("want a clean end, got %q", ev)
				}
				return
			}
			if strings.Contains(body, "[DONE]") {
				t.Errorf("a broken stream must not end with [DONE]: %q", body)
			}
			if last != `{"error":{"type":"upstream_error","message":"stream interrupted"}}` {
				t.Errorf("last event %q, want the terminal error frame", last)
			}
			if strings.Count(body, `"error"`) != 1 {
				t.Errorf("want exactly one error frame: %q", body)
			}
		})
	}
}

// TestStreamIdleTimeoutAfterCommit: a serve that stalls mid-stream longer
// than the tier timeout ends the stream with the error frame.
func TestStreamIdleTimeoutAfterCommit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	base := startRouter(t, oneTier(srv.URL, "timeout = 0.3"), routerOpts{})
	start := time.Now()
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":true}`)
	body := readAll(t, resp)
	within(t, "stalled stream", time.Since(start), 5*time.Second)
	if !strings.HasSuffix(body, "data: {\"error\":{\"type\":\"upstream_error\",\"message\":\"stream interrupted\"}}\n\n") {
		t.Errorf("body %q", body)
	}
}

// TestClientDisconnectCancelsUpstream watches the serve: when the caller
// goes away mid-stream, the serve's request must be cancelled so the GPU
// stops generating.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	for _, stream := range []bool{true, false} {
		name := map[bool]string{true: "streaming", false: "non-streaming"}[stream]
		t.Run(name, func(t *testing.T) {
			deltas := make([]string, 1000)
			for i := range deltas {
				deltas[i] = "tok "
			}
			fake, url := startFake(t, fakeserve.Options{Deltas: deltas, Pace: 10 * time.Millisecond})
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			ctx, cancel := context.WithCancel(t.Context())
			body := `{"model":"chat","stream":false}`
			if stream {
				body = `{"model":"chat","stream":true}`
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(body))
			done := make(chan struct{})
			go func() {
				defer close(done)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				buf := make([]byte, 64)
				resp.Body.Read(buf) // at least the first bytes
				cancel()
				io.Copy(io.Discard, resp.Body)
			}()
			if !stream {
				// Nothing arrives before the end; leave once the serve is busy.
				for fake.Stats().InFlight == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
			}
			wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer wcancel()
			if err := fake.WaitCancelled(wctx, 1); err != nil {
				t.Fatalf("serve never saw the cancellation: %v (stats %+v)", err, fake.Stats())
			}
			<-done
			if st := fake.Stats(); st.Completed != 0 {
				t.Errorf("serve completed the generation anyway: %+v", st)
			}
		})
	}
}

// TestRetryAdvice: every answer tells the caller the truth about
// retrying. The SDKs retry 408, 409, 429 and 5xx unless told not to
// (X-Should-Retry: false), and wait for a Retry-After under 60 s. A
// refusal the same request will meet again says "don't"; the exhaustion
// status says "go to your own provider now" (don't, with a Retry-After
// too long to wait for — the serve's own when it sent one); a rate limit
// says "wait this long".
func TestRetryAdvice(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	down, err := fakeserve.UnusedLoopbackAddr()
	if err != nil {
		t.Fatal(err)
	}
	overloaded := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, `{"error":"overloaded"}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(overloaded.Close)
	tier := func(id, base string) string {
		return `
[[router.tiers]]
id = "` + id + `"
base_url = "` + base + `"
dialect = "openai"
context_limit = 64
privacy = "local"
tool_support = true
auth_env = "SERVE_B_KEY"
model = "served-model"
`
	}
	cfg := strings.Replace(oneTier(url, ""), "tool_support = true", "tool_support = false", 1)
	cfg = strings.Replace(cfg, "[router.model_routes]", tier("down", "http://"+down)+tier("busy", overloaded.URL)+`
[router.model_routes]
down = "down"
busy = "busy"`, 1)
	base := startRouter(t, cfg, routerOpts{token: routerToken, maxBody: 4096})
	shortWait := startRouter(t, cfg, routerOpts{exhaustionRetryAfter: 30 * time.Second})
	auth := []string{"Authorization", "Bearer " + routerToken}
	msg := `,"messages":[{"role":"user","content":"hi"}]`
	tools := msg + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`
	tests := []struct {
		name, base, path, body string
		hdr                    []string
		status                 int
		shouldRetry            string
		retryAfter             string
	}{
		{"400 bad JSON", base, "/v1/chat/completions", `{"model":`, auth, 400, "false", ""},
		{"401 no token", base, "/v1/chat/completions", `{"model":"chat"` + msg + `}`, nil, 401, "false", ""},
		{"401 on messages", base, "/v1/messages", `{"model":"chat"` + msg + `}`, nil, 401, "false", ""},
		{"404 unknown model", base, "/v1/chat/completions", `{"model":"nope"` + msg + `}`, auth, 404, "false", ""},
		{"404 unknown path", base, "/v1/nothing", `{}`, auth, 404, "false", ""},
		{"413 body too large", base, "/v1/chat/completions", `{"model":"chat","x":"` + strings.Repeat("a", 5000) + `"}`, auth, 413, "false", ""},
		{"413 over the context window", base, "/v1/chat/completions", `{"model":"down","messages":[{"role":"user","content":"` + strings.Repeat("word ", 200) + `"}]}`, auth, 413, "false", ""},
		{"503 tools on a tier without tools", base, "/v1/chat/completions", `{"model":"chat"` + tools, auth, 503, "false", "120"},
		{"503 serve down: go elsewhere now", base, "/v1/chat/completions", `{"model":"down"` + msg + `}`, auth, 503, "false", "120"},
		{"503 on responses", base, "/v1/responses", `{"model":"down","input":"hi"}`, auth, 503, "false", "120"},
		{"503 on messages", base, "/v1/messages", `{"model":"down","max_tokens":8` + msg + `}`, auth, 503, "false", "120"},
		{"503 with the serve's own Retry-After", base, "/v1/chat/completions", `{"model":"busy"` + msg + `}`, auth, 503, "false", "7"},
		{"503 with exhaustion_retry_after", shortWait, "/v1/chat/completions", `{"model":"down"` + msg + `}`, nil, 503, "false", "30"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), tc.base+tc.path, tc.body, tc.hdr...)
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if got := resp.Header.Get("X-Should-Retry"); got != tc.shouldRetry {
				t.Errorf("X-Should-Retry %q, want %q", got, tc.shouldRetry)
			}
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
		})
	}
}

// TestPromptEstimateCountsWhatAgentsSend: agents send tens of kilobytes of
// tool schemas, tool calls and tool results beside a short message; the
// context gate counts all of it (still without a tokenizer), so such a
// request is 413 before the serve spends a prefill on it.
func TestPromptEstimateCountsWhatAgentsSend(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	cfg := strings.Replace(oneTier(url, ""), "context_limit = 8192", "context_limit = 4096", 1)
	base := startRouter(t, cfg, routerOpts{})
	schema := `{"type":"function","function":{"name":"tool_%d","description":"` + strings.Repeat("Reads a file from the workspace. ", 20) + `","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}`
	var tools []string
	for i := range 40 {
		tools = append(tools, fmt.Sprintf(schema, i))
	}
	result := strings.Repeat("line of a long file listing\\n", 600)
	tests := []struct {
		name, body string
		want       int
	}{
		{"short message alone", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, 200},
		{"forty tool schemas", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"tools":[` + strings.Join(tools, ",") + `]}`, 413},
		{"a long tool result", `{"model":"chat","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"ls","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"` + result + `"}]}`, 413},
		{"long tool call arguments", `{"model":"chat","messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"write","arguments":"` + strings.Repeat("x", 20000) + `"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}]}`, 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+"/v1/chat/completions", tc.body)
			if body := readAll(t, resp); resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
		})
	}
}
