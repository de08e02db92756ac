package tsrouter_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// tierKey is the Anthropic tier's key (auth_env SERVE_A_KEY); the fake
// serve requires it as x-api-key.
const tierKey = "tier-key-0123456789"

// anthropicTier is oneTier with the tier speaking Anthropic Messages.
func anthropicTier(baseURL, extra string) string {
	return strings.Replace(oneTier(baseURL, extra), `dialect = "openai"`, `dialect = "anthropic"`, 1)
}

// startAnthropic runs a fake serve and a router whose only tier is that
// serve as an Anthropic tier (extra appended to the tier table).
func startAnthropic(t *testing.T, opts fakeserve.Options, extra string) (*fakeserve.Server, string) {
	t.Helper()
	opts.APIKey = tierKey
	fake, url := startFake(t, opts)
	return fake, startRouter(t, anthropicTier(url, extra), routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tierKey}})
}

var openaiAuth = []string{"Authorization", "Bearer " + routerToken}

// oaResult is an OpenAI reply, streamed or not, accumulated.
type oaResult struct {
	Models     map[string]bool
	Content    string
	Reasoning  string
	Finish     string
	StopReason string
	Calls      []oaCall
	Usage      *oaUsage
	Done       bool // [DONE] ended the stream
	Errored    bool // an error frame ended it
	EventLines bool // an "event:" line appeared (not OpenAI framing)
}

type oaCall struct {
	ID, Name, Args string
	ArgChunks      int // chunks that carried a piece of the arguments
}

type oaUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
	Details          *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

type oaToolCall struct {
	Index    int
	ID       string
	Function struct{ Name, Arguments string }
}

type oaChoice struct {
	Delta, Message struct {
		Content          *string
		ReasoningContent string       `json:"reasoning_content"`
		ToolCalls        []oaToolCall `json:"tool_calls"`
	}
	FinishReason *string `json:"finish_reason"`
	StopReason   *string `json:"stop_reason"`
}

type oaChunk struct {
	Object  string
	Model   string
	Choices []oaChoice
	Usage   *oaUsage
	Error   map[string]any
}

// parseOpenAI reads a chat.completion or a chunk stream.
func parseOpenAI(t *testing.T, body string, stream bool) oaResult {
	t.Helper()
	r := oaResult{Models: map[string]bool{}, EventLines: strings.Contains(body, "\nevent:") || strings.HasPrefix(body, "event:")}
	payloads := []string{body}
	if stream {
		payloads = sseEvents(body)
	}
	for _, p := range payloads {
		if r.Done || r.Errored {
			t.Fatalf("frame after the end: %s", p)
		}
		if p == "[DONE]" {
			r.Done = true
			continue
		}
		var c oaChunk
		if err := json.Unmarshal([]byte(p), &c); err != nil {
			t.Fatalf("reply %q: %v", p, err)
		}
		if c.Error != nil {
			r.Errored = true
			continue
		}
		r.Models[c.Model] = true
		if c.Usage != nil {
			r.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			m := ch.Delta
			if !stream {
				m = ch.Message
			}
			if m.Content != nil {
				r.Content += *m.Content
			}
			r.Reasoning += m.ReasoningContent
			for i, tc := range m.ToolCalls {
				if !stream {
					tc.Index = i
				}
				for len(r.Calls) <= tc.Index {
					r.Calls = append(r.Calls, oaCall{})
				}
				call := &r.Calls[tc.Index]
				call.ID += tc.ID
				call.Name += tc.Function.Name
				call.Args += tc.Function.Arguments
				if tc.Function.Arguments != "" {
					call.ArgChunks++
				}
			}
			if ch.FinishReason != nil {
				r.Finish = *ch.FinishReason
			}
			if ch.StopReason != nil {
				r.StopReason = *ch.StopReason
			}
		}
	}
	return r
}

// upstreamBody decodes the body the fake serve last received.
func upstreamBody(t *testing.T, fake *fakeserve.Server) (map[string]any, fakeserve.Recorded) {
	t.Helper()
	rec := fake.LastRequest()
	var m map[string]any
	if err := json.Unmarshal(rec.Body, &m); err != nil {
		t.Fatalf("upstream body %s: %v", rec.Body, err)
	}
	return m, rec
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

const weatherTools = `"tools":[{"type":"function","function":{"name":"get_weather","description":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},{"type":"function","function":{"name":"get_time","parameters":{"type":"object"}}}]`

// TestOpenAICallerOnAnthropicTier: /v1/chat/completions on an Anthropic
// tier — the request translated, sent with the Anthropic headers, the
// reply and stream translated back.
func TestOpenAICallerOnAnthropicTier(t *testing.T) {
	fake, base := startAnthropic(t, fakeserve.Options{}, "")
	full := strings.Join(fakeserve.DefaultDeltas(), "")
	for _, tc := range []struct {
		name   string
		body   string
		stream bool
		check  func(t *testing.T, up map[string]any, got oaResult)
	}{
		{"text", `{"model":"Chat","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"temperature":0.5,"stop":"zzz"}`, false,
			func(t *testing.T, up map[string]any, got oaResult) {
				if up["system"] != "be brief" || up["max_tokens"] != 1024.0 || up["model"] != "served-model" || up["temperature"] != 0.5 || jsonOf(up["stop_sequences"]) != `["zzz"]` || up["stream"] != false {
					t.Errorf("upstream body: %s", jsonOf(up))
				}
				if msgs := jsonOf(up["messages"]); msgs != `[{"content":[{"text":"hi","type":"text"}],"role":"user"}]` {
					t.Errorf("upstream messages: %s", msgs)
				}
				if got.Content != full || got.Finish != "stop" || got.Reasoning != "" || len(got.Calls) != 0 {
					t.Errorf("reply: %+v", got)
				}
			}},
		{"text streamed with usage", `{"model":"Chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, true,
			func(t *testing.T, up map[string]any, got oaResult) {
				if up["stream"] != true {
					t.Errorf("upstream stream = %v", up["stream"])
				}
				if got.Content != full || got.Finish != "stop" || !got.Done || got.Usage == nil {
					t.Errorf("stream: %+v", got)
				}
			}},
		{"streamed without usage", `{"model":"Chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, true,
			func(t *testing.T, _ map[string]any, got oaResult) {
				if got.Content != full || !got.Done || got.Usage != nil {
					t.Errorf("a usage chunk nobody asked for, or a broken stream: %+v", got)
				}
			}},
		{"parallel tool calls streamed incrementally", `{"model":"Chat","stream":true,` + weatherTools + `,"tool_choice":"auto","messages":[{"role":"user","content":"weather?"}]}`, true,
			func(t *testing.T, up map[string]any, got oaResult) {
				if jsonOf(up["tool_choice"]) != `{"type":"auto"}` || jsonOf(up["tools"]) != `[{"description":"w","input_schema":{"properties":{"city":{"type":"string"}},"type":"object"},"name":"get_weather"},{"input_schema":{"type":"object"},"name":"get_time"}]` {
					t.Errorf("upstream tools: %s %s", jsonOf(up["tools"]), jsonOf(up["tool_choice"]))
				}
				if len(got.Calls) != 2 || got.Finish != "tool_calls" || got.Content != "" || !got.Done {
					t.Fatalf("stream: %+v", got)
				}
				for i, name := range []string{"get_weather", "get_time"} {
					c := got.Calls[i]
					if c.Name != name || !strings.HasPrefix(c.ID, "toolu_") || c.Args != `{"city":"Paris"}` || c.ArgChunks < 3 {
						t.Errorf("call %d = %+v, want %s with its arguments in several chunks", i, c, name)
					}
				}
			}},
		{"tool calls not streamed", `{"model":"Chat",` + weatherTools + `,"tool_choice":{"type":"function","function":{"name":"get_time"}},"parallel_tool_calls":false,"messages":[{"role":"user","content":"time?"}]}`, false,
			func(t *testing.T, up map[string]any, got oaResult) {
				if jsonOf(up["tool_choice"]) != `{"disable_parallel_tool_use":true,"name":"get_time","type":"tool"}` {
					t.Errorf("upstream tool_choice: %s", jsonOf(up["tool_choice"]))
				}
				if len(got.Calls) != 1 || got.Calls[0].Name != "get_time" || got.Calls[0].Args != `{"city":"Paris"}` || got.Finish != "tool_calls" {
					t.Errorf("reply: %+v", got)
				}
			}},
		{"tool round trip", `{"model":"Chat",` + weatherTools + `,"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]},{"role":"tool","tool_call_id":"toolu_1","content":"18C"}]}`, false,
			func(t *testing.T, up map[string]any, got oaResult) {
				want := `[{"content":[{"text":"weather?","type":"text"}],"role":"user"},{"content":[{"id":"toolu_1","input":{"city":"Oslo"},"name":"get_weather","type":"tool_use"}],"role":"assistant"},{"content":[{"content":"18C","tool_use_id":"toolu_1","type":"tool_result"}],"role":"user"}]`
				if msgs := jsonOf(up["messages"]); msgs != want {
					t.Errorf("upstream messages:\n got %s\nwant %s", msgs, want)
				}
				if got.Content != fakeserve.ToolResultPrefix+"18C" || got.Finish != "stop" {
					t.Errorf("reply: %+v", got)
				}
			}},
		{"thinking becomes reasoning_content", `{"model":"Chat","stream":true,"reasoning_effort":"low","max_tokens":2048,"messages":[{"role":"user","content":"think"}]}`, true,
			func(t *testing.T, up map[string]any, got oaResult) {
				if jsonOf(up["thinking"]) != `{"budget_tokens":1024,"type":"enabled"}` {
					t.Errorf("upstream thinking: %s", jsonOf(up["thinking"]))
				}
				if got.Reasoning != "Let me think about this." || got.Content != full {
					t.Errorf("stream: %+v", got)
				}
			}},
		{"thinking not streamed", `{"model":"Chat","reasoning_effort":"low","max_tokens":2048,"messages":[{"role":"user","content":"think"}]}`, false,
			func(t *testing.T, _ map[string]any, got oaResult) {
				if got.Reasoning != "Let me think about this." || got.Content != full {
					t.Errorf("reply: %+v", got)
				}
			}},
		{"stop sequence", `{"model":"Chat","stream":true,"stop":[" fake","never"],"messages":[{"role":"user","content":"hi"}]}`, true,
			func(t *testing.T, up map[string]any, got oaResult) {
				if jsonOf(up["stop_sequences"]) != `[" fake","never"]` {
					t.Errorf("upstream stop_sequences: %s", jsonOf(up["stop_sequences"]))
				}
				if got.Content != "Hello from the" || got.Finish != "stop" || got.StopReason != " fake" {
					t.Errorf("stream: %+v", got)
				}
			}},
		{"stop sequence not streamed", `{"model":"Chat","stop":[" fake"],"messages":[{"role":"user","content":"hi"}]}`, false,
			func(t *testing.T, _ map[string]any, got oaResult) {
				if got.Content != "Hello from the" || got.Finish != "stop" || got.StopReason != " fake" {
					t.Errorf("reply: %+v", got)
				}
			}},
		{"max_tokens is length", `{"model":"Chat","stream":true,"max_completion_tokens":2,"messages":[{"role":"user","content":"hi"}]}`, true,
			func(t *testing.T, up map[string]any, got oaResult) {
				if up["max_tokens"] != 2.0 || got.Content != "Hello from" || got.Finish != "length" {
					t.Errorf("upstream max_tokens %v, stream %+v", up["max_tokens"], got)
				}
			}},
		{"image", `{"model":"Chat","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://example.invalid/cat.png"}}]}]}`, false,
			func(t *testing.T, up map[string]any, got oaResult) {
				want := `[{"content":[{"text":"what is it?","type":"text"},{"source":{"data":"iVBORw0KGgo=","media_type":"image/png","type":"base64"},"type":"image"},{"source":{"type":"url","url":"https://example.invalid/cat.png"},"type":"image"}],"role":"user"}]`
				if msgs := jsonOf(up["messages"]); msgs != want {
					t.Errorf("upstream messages:\n got %s\nwant %s", msgs, want)
				}
				if got.Content != full {
					t.Errorf("reply: %+v", got)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+"/v1/chat/completions", tc.body, openaiAuth...)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); (ct == "text/event-stream") != tc.stream {
				t.Errorf("Content-Type %q", ct)
			}
			got := parseOpenAI(t, body, tc.stream)
			if len(got.Models) != 1 || !got.Models["Chat"] || got.EventLines {
				t.Errorf("every chunk must name the caller's model in OpenAI framing: %v\n%s", got.Models, body)
			}
			up, rec := upstreamBody(t, fake)
			if rec.Path != "/v1/messages" || rec.Header.Get("Anthropic-Version") != "2023-06-01" || rec.Header.Get("X-Api-Key") != tierKey || rec.Header.Get("Authorization") != "" {
				t.Errorf("upstream request: path %s, headers %v", rec.Path, rec.Header)
			}
			// Usage: the fake reports half its prompt as cache reads; the
			// OpenAI prompt_tokens counts them, cached_tokens names them.
			prompt := max(1, len(rec.Body)/4)
			if u := got.Usage; u != nil && (u.PromptTokens != prompt || u.Details == nil || u.Details.CachedTokens != prompt/2 || u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.CompletionTokens == 0) {
				t.Errorf("usage %+v (details %+v), want prompt %d with %d cached", u, u.Details, prompt, prompt/2)
			} else if u == nil && !tc.stream {
				t.Errorf("reply without usage")
			}
			tc.check(t, up, got)
		})
	}
}

// TestAnthropicTierBodyRules: the output cap and the operator's overrides
// reach an Anthropic tier in Anthropic terms, for both caller dialects.
func TestAnthropicTierBodyRules(t *testing.T) {
	fake, base := startAnthropic(t, fakeserve.Options{}, "max_output_tokens = 3\nextra_body = { top_k = 7, thinking = { type = \"disabled\" } }\nextra_body_defaults = { temperature = 0.3, stream = false }")
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
		clamped          bool
		temperature      float64
	}{
		{"openai caller, cap applied silently", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`, openaiAuth, false, 0.3},
		{"openai caller, clamped", "/v1/chat/completions", `{"model":"chat","max_tokens":100,"temperature":0.9,"messages":[{"role":"user","content":"hi"}]}`, openaiAuth, true, 0.9},
		{"anthropic caller, clamped", "/v1/messages", `{"model":"chat","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`, anthropicAuth, true, 0.3},
		{"anthropic caller, within the cap", "/v1/messages", `{"model":"chat","max_tokens":3,"temperature":0.9,"messages":[{"role":"user","content":"hi"}]}`, anthropicAuth, false, 0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+tc.path, tc.body, tc.hdr...)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			h := resp.Header
			if clamped := h.Get("X-Anvil-Warning") == "max_tokens_clamped"; clamped != tc.clamped ||
				tc.clamped && (h.Get("X-Anvil-Max-Tokens-Requested") != "100" || h.Get("X-Anvil-Max-Tokens-Applied") != "3" || !strings.Contains(h.Get("Warning"), "clamped from 100 to 3")) {
				t.Errorf("clamp headers %v, want clamped=%t", h, tc.clamped)
			}
			up, _ := upstreamBody(t, fake)
			// extra_body_defaults' stream=false is soft: a body that already
			// has stream keeps it; extra_body overrides everything.
			if up["max_tokens"] != 3.0 || up["top_k"] != 7.0 || jsonOf(up["thinking"]) != `{"type":"disabled"}` || up["temperature"] != tc.temperature {
				t.Errorf("upstream body %s", jsonOf(up))
			}
			if !strings.Contains(body, "Hello from the") || strings.Contains(body, "fake serve") {
				t.Errorf("reply: %s", body)
			}
		})
	}
}

// TestAnthropicTierReadiness: health_path and model_identity probe an
// Anthropic tier like any other — the identity check with the tier's key
// as x-api-key — and fail closed.
func TestAnthropicTierReadiness(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  string
		mode fakeserve.Mode
		want int
	}{
		{"identity passes with x-api-key", tierKey, fakeserve.ModeOK, 200},
		{"wrong key fails identity", "not-the-key", fakeserve.ModeOK, 503},
		{"unhealthy serve", tierKey, fakeserve.ModeStatus503, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, fakeserve.Options{APIKey: tierKey})
			fake.SetMode(tc.mode)
			cfg := strings.Replace(anthropicTier(url, "health_path = \"/health\"\nmodel_identity = true"), "[router]\n", "[router]\navailability_probe_background = false\n", 1)
			base := startRouter(t, cfg, routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tc.key}})
			resp := post(t, t.Context(), base+"/v1/messages", `{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, anthropicAuth...)
			body := readAll(t, resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.want != 200 && fake.Stats().Requests != 0 {
				t.Errorf("a tier that failed its probe was sent the request")
			}
		})
	}
}

var anthropicAuth = []string{"X-Api-Key", routerToken, "Anthropic-Version", "2023-06-01"}

// TestResponsesCallerOnAnthropicTier: the Responses API reaches an
// Anthropic tier through the same translation (its handler only sees
// OpenAI Chat replies and chunks).
func TestResponsesCallerOnAnthropicTier(t *testing.T) {
	fake, base := startAnthropic(t, fakeserve.Options{}, "")
	full := strings.Join(fakeserve.DefaultDeltas(), "")
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{true: "stream", false: "non-stream"}[stream], func(t *testing.T) {
			body := `{"model":"chat","input":"hi","stream":` + map[bool]string{true: "true", false: "false"}[stream] + `}`
			resp := post(t, t.Context(), base+"/v1/responses", body, openaiAuth...)
			got := readAll(t, resp)
			if resp.StatusCode != 200 || !strings.Contains(got, `"text":`+jsonOf(full)) || !strings.Contains(got, `"cached_tokens":`) {
				t.Errorf("status %d: %s", resp.StatusCode, got)
			}
			if rec := fake.LastRequest(); rec.Path != "/v1/messages" || rec.Header.Get("Anthropic-Version") == "" {
				t.Errorf("upstream request %s %v", rec.Path, rec.Header)
			}
		})
	}
}
