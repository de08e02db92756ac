package fakeserve_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

func TestHealthAndModels(t *testing.T) {
	tests := []struct {
		name       string
		mode       fakeserve.Mode
		path       string
		wantStatus int
		check      func(t *testing.T, body []byte)
	}{
		{name: "health ok", mode: fakeserve.ModeOK, path: "/health", wantStatus: 200, check: emptyBody},
		{name: "health 503", mode: fakeserve.ModeStatus503, path: "/health", wantStatus: 503, check: emptyBody},
		{name: "health shallow while hanging", mode: fakeserve.ModeHang, path: "/health", wantStatus: 200, check: emptyBody},
		{name: "health shallow while 500", mode: fakeserve.ModeStatus500, path: "/health", wantStatus: 200, check: emptyBody},
		{name: "models", mode: fakeserve.ModeOK, path: "/v1/models", wantStatus: 200, check: func(t *testing.T, body []byte) {
			var got struct {
				Object string `json:"object"`
				Data   []struct {
					ID          string          `json:"id"`
					Object      string          `json:"object"`
					Created     int64           `json:"created"`
					OwnedBy     string          `json:"owned_by"`
					Root        string          `json:"root"`
					Parent      json.RawMessage `json:"parent"`
					MaxModelLen int             `json:"max_model_len"`
					Permission  []any           `json:"permission"`
				} `json:"data"`
			}
			mustUnmarshal(t, body, &got)
			if got.Object != "list" || len(got.Data) != 1 {
				t.Fatalf("models = %s", body)
			}
			m := got.Data[0]
			if m.ID != "m-test" || m.Object != "model" || m.OwnedBy != "vllm" || m.Root != "m-test" ||
				string(m.Parent) != "null" || m.MaxModelLen != 4096 || m.Permission == nil || m.Created == 0 {
				t.Errorf("model entry = %+v (body %s)", m, body)
			}
		}},
		{name: "models while 503", mode: fakeserve.ModeStatus503, path: "/v1/models", wantStatus: 200},
		{name: "unknown path", mode: fakeserve.ModeOK, path: "/v1/nope", wantStatus: 404, check: func(t *testing.T, body []byte) {
			if string(body) != `{"detail":"Not Found"}` {
				t.Errorf("body = %s", body)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base, c := serve(t, fakeserve.Options{Model: "m-test", Mode: tt.mode})
			resp, body, err := do(t, c, http.MethodGet, base+tt.path, "", nil)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

func emptyBody(t *testing.T, body []byte) {
	t.Helper()
	if len(body) != 0 {
		t.Errorf("body = %q, want empty", body)
	}
}

func TestChatNonStream(t *testing.T) {
	tests := []struct {
		name        string
		opts        fakeserve.Options
		body        string
		wantContent *string
		wantFinish  string
		wantTokens  int
		wantTool    string
	}{
		{
			name:        "default deltas",
			body:        `{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`,
			wantContent: ptr("Hello from the fake serve."), wantFinish: "stop", wantTokens: 6,
		},
		{
			name:        "model may be omitted",
			body:        `{"messages":[{"role":"user","content":"hi"}]}`,
			wantContent: ptr("Hello from the fake serve."), wantFinish: "stop", wantTokens: 6,
		},
		{
			name:        "custom deltas are escaped",
			opts:        fakeserve.Options{Deltas: []string{`"q"`, " <b>&", "\né"}},
			body:        `{"model":"fake-model","messages":[]}`,
			wantContent: ptr("\"q\" <b>&\né"), wantFinish: "stop", wantTokens: 3,
		},
		{
			name:        "max_tokens truncates",
			body:        `{"model":"fake-model","messages":[],"max_tokens":2}`,
			wantContent: ptr("Hello from"), wantFinish: "length", wantTokens: 2,
		},
		{
			name:        "max_completion_tokens wins over max_tokens",
			body:        `{"model":"fake-model","messages":[],"max_tokens":1,"max_completion_tokens":3}`,
			wantContent: ptr("Hello from the"), wantFinish: "length", wantTokens: 3,
		},
		{
			name:        "max_tokens above the answer",
			body:        `{"model":"fake-model","messages":[],"max_tokens":100}`,
			wantContent: ptr("Hello from the fake serve."), wantFinish: "stop", wantTokens: 6,
		},
		{
			name:       "tools",
			body:       `{"model":"fake-model","messages":[],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}},{"type":"function","function":{"name":"other"}}]}`,
			wantFinish: "tool_calls", wantTokens: 4, wantTool: "get_weather",
		},
		{
			name:       "named tool_choice",
			body:       `{"model":"fake-model","messages":[],"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],"tool_choice":{"type":"function","function":{"name":"b"}}}`,
			wantFinish: "tool_calls", wantTokens: 4, wantTool: "b",
		},
		{
			name:        "tool_choice none",
			body:        `{"model":"fake-model","messages":[],"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"none"}`,
			wantContent: ptr("Hello from the fake serve."), wantFinish: "stop", wantTokens: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base, c := serve(t, tt.opts)
			resp, body, err := do(t, c, http.MethodPost, base+"/v1/chat/completions", tt.body, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("status %d, read err %v, body %s", resp.StatusCode, err, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if !isCompact(string(body)) {
				t.Errorf("body is not compact JSON: %s", body)
			}
			var got completion
			mustUnmarshal(t, body, &got)
			if !strings.HasPrefix(got.ID, "chatcmpl-") || len(got.ID) != len("chatcmpl-")+32 ||
				got.Object != "chat.completion" || got.Created == 0 || got.Model != "fake-model" || len(got.Choices) != 1 {
				t.Fatalf("envelope = %+v", got)
			}
			ch := got.Choices[0]
			if ch.Message.Role != "assistant" || string(ch.Message.ReasoningContent) != "null" || ch.FinishReason != tt.wantFinish {
				t.Errorf("choice = %+v, want finish %q", ch, tt.wantFinish)
			}
			if tt.wantContent != nil {
				if ch.Message.Content == nil || *ch.Message.Content != *tt.wantContent {
					t.Errorf("content = %v, want %q", ch.Message.Content, *tt.wantContent)
				}
				if ch.Message.ToolCalls == nil || len(ch.Message.ToolCalls) != 0 {
					t.Errorf("tool_calls = %v, want []", ch.Message.ToolCalls)
				}
			}
			if tt.wantTool != "" {
				if ch.Message.Content != nil {
					t.Errorf("content = %q, want null", *ch.Message.Content)
				}
				if len(ch.Message.ToolCalls) != 1 {
					t.Fatalf("tool_calls = %+v", ch.Message.ToolCalls)
				}
				tc := ch.Message.ToolCalls[0]
				if !strings.HasPrefix(tc.ID, "chatcmpl-tool-") || tc.Type != "function" ||
					tc.Function.Name != tt.wantTool || tc.Function.Arguments != `{"city":"Paris"}` {
					t.Errorf("tool call = %+v", tc)
				}
			}
			u := got.Usage
			if u.CompletionTokens != tt.wantTokens || u.PromptTokens < 1 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
				t.Errorf("usage = %+v, want %d completion tokens", u, tt.wantTokens)
			}
			if !strings.Contains(string(body), `"prompt_tokens_details":null`) {
				t.Errorf("usage lacks prompt_tokens_details: %s", body)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// expectedFrames builds the exact frame sequence of a normal stream for the
// given id and created time.
func expectedFrames(id string, created int64, model string, deltas []string, finish string, u *usage, done bool) []string {
	head := fmt.Sprintf(`{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%q,"choices":[`, id, created, model)
	out := []string{head + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`}
	for _, d := range deltas {
		var q strings.Builder
		enc := json.NewEncoder(&q)
		enc.SetEscapeHTML(false) // like vLLM: "<" stays "<"
		_ = enc.Encode(d)
		out = append(out, head+`{"index":0,"delta":{"content":`+strings.TrimSuffix(q.String(), "\n")+`},"logprobs":null,"finish_reason":null}]}`)
	}
	out = append(out, head+`{"index":0,"delta":{},"logprobs":null,"finish_reason":"`+finish+`","stop_reason":null}]}`)
	if u != nil {
		out = append(out, head+fmt.Sprintf(`],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,"prompt_tokens_details":null}}`,
			u.PromptTokens, u.CompletionTokens, u.TotalTokens))
	}
	if done {
		out = append(out, "[DONE]")
	}
	return out
}

func TestChatStreamExactFrames(t *testing.T) {
	deflt := fakeserve.DefaultDeltas()
	tests := []struct {
		name       string
		opts       fakeserve.Options
		body       string
		wantDeltas []string
		wantFinish string
		wantUsage  bool
		wantDone   bool
	}{
		{
			name:       "plain",
			body:       `{"model":"fake-model","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantDeltas: deflt, wantFinish: "stop", wantDone: true,
		},
		{
			name:       "include_usage",
			body:       `{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			wantDeltas: deflt, wantFinish: "stop", wantUsage: true, wantDone: true,
		},
		{
			name:       "include_usage false",
			body:       `{"model":"fake-model","stream":true,"stream_options":{"include_usage":false},"messages":[]}`,
			wantDeltas: deflt, wantFinish: "stop", wantDone: true,
		},
		{
			name:       "max_tokens gives length",
			body:       `{"model":"fake-model","stream":true,"max_tokens":3,"stream_options":{"include_usage":true},"messages":[]}`,
			wantDeltas: deflt[:3], wantFinish: "length", wantUsage: true, wantDone: true,
		},
		{
			name:       "custom deltas and model",
			opts:       fakeserve.Options{Model: "org/Model-7B", Deltas: []string{"a", `"b"`, "</c>"}},
			body:       `{"model":"org/Model-7B","stream":true,"messages":[]}`,
			wantDeltas: []string{"a", `"b"`, "</c>"}, wantFinish: "stop", wantDone: true,
		},
		{
			name:       "no-done mode",
			opts:       fakeserve.Options{Mode: fakeserve.ModeNoDone},
			body:       `{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
			wantDeltas: deflt, wantFinish: "stop", wantUsage: true, wantDone: false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base, c := serve(t, tt.opts)
			resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", tt.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			frames, err := readFrames(t, resp.Body)
			if err != nil {
				t.Fatalf("stream ended with %v", err)
			}
			if len(frames) == 0 {
				t.Fatal("no frames")
			}
			first := parseChunk(t, frames[0].data)
			var u *usage
			if tt.wantUsage {
				idx := len(frames) - 1
				if tt.wantDone {
					idx--
				}
				u = parseChunk(t, frames[idx].data).Usage
				if u == nil || u.CompletionTokens != len(tt.wantDeltas) || u.PromptTokens < 1 ||
					u.TotalTokens != u.PromptTokens+u.CompletionTokens {
					t.Fatalf("usage = %+v", u)
				}
			}
			model := s.Options().Model
			want := expectedFrames(first.ID, first.Created, model, tt.wantDeltas, tt.wantFinish, u, tt.wantDone)
			got := datas(frames)
			if !slices.Equal(got, want) {
				t.Errorf("frames differ\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
			}
			if !strings.HasPrefix(first.ID, "chatcmpl-") || first.Created == 0 {
				t.Errorf("id %q created %d", first.ID, first.Created)
			}
			waitFor(t, "completed", func() bool { return s.Stats().Completed == 1 })
		})
	}
}

func TestChatStreamTools(t *testing.T) {
	_, base, c := serve(t, fakeserve.Options{})
	body := `{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},"messages":[],` +
		`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]}`
	resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	frames, err := readFrames(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(frames); n < 5 || frames[n-1].data != "[DONE]" {
		t.Fatalf("frames = %q", datas(frames))
	}
	role := parseChunk(t, frames[0].data)
	if d := role.Choices[0].Delta; d.Role == nil || *d.Role != "assistant" {
		t.Errorf("first frame is not the role chunk: %s", frames[0].data)
	}
	var args strings.Builder
	var name, id, finish string
	var usageSeen bool
	for i, f := range frames[1 : len(frames)-1] {
		if !isCompact(f.data) {
			t.Errorf("frame %d not compact: %s", i+1, f.data)
		}
		ch := parseChunk(t, f.data)
		if ch.Usage != nil {
			usageSeen = true
			if len(ch.Choices) != 0 || ch.Usage.CompletionTokens != 4 {
				t.Errorf("usage chunk = %s", f.data)
			}
			continue
		}
		c0 := ch.Choices[0]
		if c0.FinishReason != nil {
			finish = *c0.FinishReason
			continue
		}
		if len(c0.Delta.ToolCalls) != 1 || c0.Delta.Content != nil {
			t.Fatalf("frame %d is not a tool call delta: %s", i+1, f.data)
		}
		tc := c0.Delta.ToolCalls[0]
		if tc.Index != 0 {
			t.Errorf("tool call index = %d", tc.Index)
		}
		if i == 0 {
			name, id = tc.Function.Name, tc.ID
			if tc.Type != "function" || tc.Function.Arguments != "" {
				t.Errorf("first tool call delta = %s", f.data)
			}
		} else if tc.ID != "" || tc.Function.Name != "" {
			t.Errorf("argument fragment repeats id/name: %s", f.data)
		}
		args.WriteString(tc.Function.Arguments)
	}
	if name != "get_weather" || !strings.HasPrefix(id, "chatcmpl-tool-") {
		t.Errorf("name %q id %q", name, id)
	}
	if args.String() != `{"city":"Paris"}` {
		t.Errorf("arguments = %q", args.String())
	}
	if finish != "tool_calls" || !usageSeen {
		t.Errorf("finish %q usage seen %v", finish, usageSeen)
	}
}

func TestChatRequestErrors(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		wantStatus int
		wantType   string
		wantParam  string
		wantMsg    string
	}{
		{name: "invalid JSON", method: "POST", path: "/v1/chat/completions", body: `{"model":`, wantStatus: 400, wantType: "BadRequestError", wantParam: "null"},
		{name: "unknown model", method: "POST", path: "/v1/chat/completions", body: `{"model":"gpt-x","messages":[]}`, wantStatus: 404,
			wantType: "NotFoundError", wantParam: `"model"`, wantMsg: "The model `gpt-x` does not exist."},
		{name: "max_tokens zero", method: "POST", path: "/v1/chat/completions", body: `{"model":"fake-model","max_tokens":0}`, wantStatus: 400,
			wantType: "BadRequestError", wantParam: `"max_tokens"`},
		{name: "wrong method", method: "GET", path: "/v1/chat/completions", wantStatus: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base, c := serve(t, fakeserve.Options{})
			resp, body, err := do(t, c, tt.method, base+tt.path, tt.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tt.wantType == "" {
				return
			}
			var e vllmError
			mustUnmarshal(t, body, &e)
			if e.Error.Type != tt.wantType || e.Error.Code != tt.wantStatus || string(e.Error.Param) != tt.wantParam || e.Error.Message == "" {
				t.Errorf("error = %+v (param %s)", e.Error, e.Error.Param)
			}
			if tt.wantMsg != "" && e.Error.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", e.Error.Message, tt.wantMsg)
			}
			if st := s.Stats(); st.Requests != 1 || st.Completed != 1 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		auth       string
		wantStatus int
	}{
		{name: "chat without key", method: "POST", path: "/v1/chat/completions", wantStatus: 401},
		{name: "chat with wrong key", method: "POST", path: "/v1/chat/completions", auth: "Bearer nope", wantStatus: 401},
		{name: "chat with key but no Bearer", method: "POST", path: "/v1/chat/completions", auth: "s3cret", wantStatus: 401},
		{name: "chat with key", method: "POST", path: "/v1/chat/completions", auth: "Bearer s3cret", wantStatus: 200},
		{name: "models without key", method: "GET", path: "/v1/models", wantStatus: 401},
		{name: "models with key", method: "GET", path: "/v1/models", auth: "Bearer s3cret", wantStatus: 200},
		{name: "health is open", method: "GET", path: "/health", wantStatus: 200},
		{name: "metrics are open", method: "GET", path: "/metrics", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base, c := serve(t, fakeserve.Options{APIKey: "s3cret"})
			var hdr map[string]string
			if tt.auth != "" {
				hdr = map[string]string{"Authorization": tt.auth}
			}
			body := ""
			if tt.method == "POST" {
				body = `{"model":"fake-model","messages":[]}`
			}
			resp, data, err := do(t, c, tt.method, base+tt.path, body, hdr)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, data)
			}
			if tt.wantStatus == 401 && string(data) != `{"error":"Unauthorized"}` {
				t.Errorf("401 body = %s", data)
			}
			if tt.path == "/v1/chat/completions" {
				if got := s.LastRequest().Header.Get("Authorization"); got != tt.auth {
					t.Errorf("recorded Authorization = %q, want %q", got, tt.auth)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{Model: `we"ird`})
	for range 3 {
		if resp, body, err := do(t, c, "POST", base+"/v1/chat/completions", `{"stream":true}`, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("chat: %v %d %s", err, resp.StatusCode, body)
		}
	}
	// One request in flight shows as running.
	s.SetMode(fakeserve.ModeHang)
	errc := make(chan error, 1)
	go func() {
		resp, err := send(t.Context(), c, "POST", base+"/v1/chat/completions", `{}`, nil)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "a request in flight", func() bool { return s.Stats().InFlight == 1 })

	resp, body, err := do(t, c, "GET", base+"/metrics", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %d", err, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	text := string(body)
	label := `{model_name="we\"ird"}`
	for _, want := range []string{
		"vllm:num_requests_running" + label + " 1\n",
		"vllm:num_requests_waiting" + label + " 0\n",
		"vllm:kv_cache_usage_perc" + label + " ",
		"vllm:num_preemptions_total" + label + " 0\n",
		"# TYPE vllm:time_to_first_token_seconds histogram\n",
		`vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="we\"ird"} 3` + "\n",
		"vllm:time_to_first_token_seconds_count" + label + " 3\n",
		"vllm:time_to_first_token_seconds_sum" + label + " ",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if !strings.HasPrefix(line, "vllm:") || !strings.Contains(line, `model_name="we\"ird"}`) || i < 0 {
			t.Errorf("odd metrics line %q", line)
			continue
		}
		if _, err := strconv.ParseFloat(line[i+1:], 64); err != nil {
			t.Errorf("metrics line %q: %v", line, err)
		}
	}
}

// TestReportedMaxModelLen: /v1/models reports the default context length,
// a configured one, or none at all.
func TestReportedMaxModelLen(t *testing.T) {
	tests := []struct {
		name    string
		setting int
		want    any // float64 from JSON, or nil when the field is absent
	}{
		{"default", 0, float64(fakeserve.MaxModelLen)},
		{"configured", 32768, float64(32768)},
		{"not reported", -1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base, c := serve(t, fakeserve.Options{Model: "m-test", ReportedMaxModelLen: tt.setting})
			_, body, err := do(t, c, http.MethodGet, base+"/v1/models", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Data []map[string]any `json:"data"`
			}
			mustUnmarshal(t, body, &got)
			if len(got.Data) != 1 {
				t.Fatalf("models = %s", body)
			}
			v, present := got.Data[0]["max_model_len"]
			if (tt.want == nil) == present || (present && v != tt.want) {
				t.Errorf("max_model_len = %v (present %v), want %v; body %s", v, present, tt.want, body)
			}
		})
	}
}
