package tsrouter_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// respEvent is one Responses SSE event as a client decodes it.
type respEvent struct {
	Type     string         `json:"type"`
	Seq      *int           `json:"sequence_number"`
	ItemID   string         `json:"item_id"`
	Index    *int           `json:"output_index"`
	Delta    string         `json:"delta"`
	Item     map[string]any `json:"item"`
	Response map[string]any `json:"response"`
	Error    map[string]any `json:"error"`
}

// responsesEvents parses a Responses stream, checking that every event's
// "event:" name is its data's type and that sequence_number counts 0, 1,
// 2, … as the SDK types declare.
func responsesEvents(t *testing.T, body string) []respEvent {
	t.Helper()
	var out []respEvent
	for frame := range strings.SplitSeq(strings.TrimSuffix(body, "\n\n"), "\n\n") {
		name, data, ok := strings.Cut(frame, "\n")
		name, ok1 := strings.CutPrefix(name, "event: ")
		data, ok2 := strings.CutPrefix(data, "data: ")
		var ev respEvent
		if !ok || !ok1 || !ok2 || json.Unmarshal([]byte(data), &ev) != nil || ev.Type != name {
			t.Fatalf("bad frame %q in\n%s", frame, body)
		}
		if ev.Seq == nil || *ev.Seq != len(out) {
			t.Fatalf("event %d (%s) has sequence_number %v", len(out), name, ev.Seq)
		}
		out = append(out, ev)
	}
	return out
}

func eventTypes(evs []respEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

// responsesError decodes the Responses error envelope, which must carry
// "code": null.
func responsesError(t *testing.T, body string) (typ, msg string) {
	t.Helper()
	var e struct {
		Error map[string]any `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil {
		t.Fatalf("not an error envelope: %s", body)
	}
	if code, ok := e.Error["code"]; !ok || code != nil {
		t.Errorf("envelope without code:null: %s", body)
	}
	typ, _ = e.Error["type"].(string)
	msg, _ = e.Error["message"].(string)
	return typ, msg
}

// respUpstream is the serve's view of the last request.
func respUpstream(t *testing.T, fake *fakeserve.Server) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(fake.LastRequest().Body, &m); err != nil {
		t.Fatalf("upstream body: %v", err)
	}
	return m
}

var responsesAuth = []string{"Authorization", "Bearer " + routerToken}

// TestResponsesNonStreaming: a Responses request reaches the serve as an
// OpenAI Chat request (instructions and developer messages as system
// messages, the tier's model) and the reply comes back as a response
// object naming the caller's model exactly as sent.
func TestResponsesNonStreaming(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Deltas: []string{"Hello", " there"}})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	resp := post(t, t.Context(), base+"/v1/responses", `{"model":"LLM.Primary","instructions":"be brief","input":[{"role":"developer","content":"dev rules"},{"role":"user","content":[{"type":"input_text","text":"hi"}]}],"max_output_tokens":64}`, responsesAuth...)
	body := readAll(t, resp)
	var r struct {
		Object, Status, Model string
		Output                []struct {
			Type, Role string
			Content    []struct{ Type, Text string }
		}
		Usage map[string]float64
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if r.Object != "response" || r.Status != "completed" || r.Model != "LLM.Primary" || len(r.Output) != 1 ||
		r.Output[0].Type != "message" || r.Output[0].Content[0].Type != "output_text" || r.Output[0].Content[0].Text != "Hello there" {
		t.Errorf("response %s", body)
	}
	if u := r.Usage; u["output_tokens"] != 2 || u["input_tokens"] < 1 || u["total_tokens"] != u["input_tokens"]+2 {
		t.Errorf("usage %v", r.Usage)
	}
	if resp.Header.Get("X-Anvil-Overhead-Us") == "" {
		t.Error("no X-Anvil-Overhead-Us")
	}
	up := respUpstream(t, fake)
	msgs, _ := up["messages"].([]any)
	roles := []string{}
	for _, m := range msgs {
		roles = append(roles, m.(map[string]any)["role"].(string))
	}
	if up["model"] != "served-model" || up["stream"] != false || up["max_completion_tokens"] != 64.0 || strings.Join(roles, ",") != "system,system,user" ||
		msgs[0].(map[string]any)["content"] != "be brief" || msgs[2].(map[string]any)["content"] != "hi" {
		t.Errorf("upstream body %s", fake.LastRequest().Body)
	}
}

// TestResponsesStreaming pins the exact event sequence of the official
// API for text, reasoning and tool calls, streamed as the serve produces
// them: one delta event per serve delta (function-call arguments
// included), parallel calls as separate items.
func TestResponsesStreaming(t *testing.T) {
	textItem := []string{"response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done"}
	reasoningItem := []string{"response.output_item.added", "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
		"response.reasoning_text.done", "response.content_part.done", "response.output_item.done"}
	callItem := []string{"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
		"response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done"}
	start := []string{"response.created", "response.in_progress"}
	const tools = `"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}},{"type":"function","name":"get_time"}]`
	for _, tc := range []struct {
		name  string
		opts  fakeserve.Options
		body  string
		want  [][]string
		check func(t *testing.T, final map[string]any)
	}{
		{
			name: "text",
			opts: fakeserve.Options{Deltas: []string{"Hel", "lo"}},
			body: `{"model":"chat","stream":true,"input":"hi"}`,
			want: [][]string{start, textItem, {"response.completed"}},
			check: func(t *testing.T, final map[string]any) {
				if text := outputText(final, 0); text != "Hello" {
					t.Errorf("text %q", text)
				}
			},
		},
		{
			name: "reasoning then text",
			opts: fakeserve.Options{Reasoning: []string{"Think", "ing."}, Deltas: []string{"Hel", "lo"}},
			body: `{"model":"chat","stream":true,"input":"hi"}`,
			want: [][]string{start, reasoningItem, textItem, {"response.completed"}},
			check: func(t *testing.T, final map[string]any) {
				rs := final["output"].([]any)[0].(map[string]any)
				if rs["type"] != "reasoning" || !strings.HasPrefix(rs["id"].(string), "rs_") || rs["content"].([]any)[0].(map[string]any)["text"] != "Thinking." {
					t.Errorf("reasoning item %v", rs)
				}
				if outputText(final, 1) != "Hello" {
					t.Errorf("output %v", final["output"])
				}
			},
		},
		{
			name: "tool call, arguments streamed",
			body: `{"model":"chat","stream":true,"input":"weather?",` + tools + `}`,
			want: [][]string{start, callItem, {"response.completed"}},
			check: func(t *testing.T, final map[string]any) {
				checkCalls(t, final, "get_weather")
			},
		},
		{
			name: "parallel tool calls",
			opts: fakeserve.Options{ParallelTools: true},
			body: `{"model":"chat","stream":true,"input":"weather and time?",` + tools + `}`,
			want: [][]string{start, callItem, callItem, {"response.completed"}},
			check: func(t *testing.T, final map[string]any) {
				checkCalls(t, final, "get_weather", "get_time")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, tc.opts)
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			resp := post(t, t.Context(), base+"/v1/responses", tc.body)
			body := readAll(t, resp)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			evs := responsesEvents(t, body)
			if want := slices.Concat(tc.want...); !slices.Equal(eventTypes(evs), want) {
				t.Fatalf("events\n got %v\nwant %v", eventTypes(evs), want)
			}
			// The deltas rebuild what the done item and the final
			// response say, item by item.
			built := map[int]string{}
			for _, e := range evs {
				if strings.HasSuffix(e.Type, ".delta") {
					built[*e.Index] += e.Delta
				}
			}
			final := evs[len(evs)-1].Response
			for i, it := range final["output"].([]any) {
				if got := itemText(it.(map[string]any)); got != built[i] {
					t.Errorf("item %d: deltas built %q, final %q", i, built[i], got)
				}
			}
			if final["status"] != "completed" || final["model"] != "chat" || final["usage"] == nil {
				t.Errorf("final response %v", final)
			}
			tc.check(t, final)
			up := respUpstream(t, fake)
			if up["stream"] != true || up["stream_options"].(map[string]any)["include_usage"] != true {
				t.Errorf("upstream %s", fake.LastRequest().Body)
			}
		})
	}
}

// outputText is the text of the message item at i.
func outputText(resp map[string]any, i int) string {
	out := resp["output"].([]any)
	if i >= len(out) {
		return ""
	}
	return itemText(out[i].(map[string]any))
}

// itemText is what an item's deltas build: its text or its arguments.
func itemText(it map[string]any) string {
	if it["type"] == "function_call" {
		return it["arguments"].(string)
	}
	var s string
	for _, p := range it["content"].([]any) {
		s += p.(map[string]any)["text"].(string)
	}
	return s
}

// checkCalls checks the function_call items: one per name, in order,
// arguments intact, call_ids present and distinct.
func checkCalls(t *testing.T, resp map[string]any, names ...string) {
	t.Helper()
	out := resp["output"].([]any)
	if len(out) != len(names) {
		t.Fatalf("want %d calls, output %v", len(names), out)
	}
	ids := map[any]bool{}
	for i, it := range out {
		c := it.(map[string]any)
		if c["type"] != "function_call" || c["name"] != names[i] || c["arguments"] != `{"city":"Paris"}` || c["status"] != "completed" ||
			c["call_id"] == "" || ids[c["call_id"]] || !strings.HasPrefix(c["id"].(string), "fc_") {
			t.Errorf("call %d: %v", i, c)
		}
		ids[c["call_id"]] = true
	}
}

// TestResponsesToolsNonStreaming: tool calls (one, and parallel) as
// function_call items in a non-streaming reply.
func TestResponsesToolsNonStreaming(t *testing.T) {
	const tools = `"tools":[{"type":"function","name":"get_weather"},{"type":"function","name":"get_time","strict":true}]`
	for _, tc := range []struct {
		name  string
		opts  fakeserve.Options
		names []string
	}{
		{"one call", fakeserve.Options{}, []string{"get_weather"}},
		{"parallel calls", fakeserve.Options{ParallelTools: true}, []string{"get_weather", "get_time"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, url := startFake(t, tc.opts)
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			resp := post(t, t.Context(), base+"/v1/responses", `{"model":"chat","input":"go",`+tools+`,"tool_choice":"required"}`)
			body := readAll(t, resp)
			var r map[string]any
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &r) != nil {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			checkCalls(t, r, tc.names...)
			up := respUpstream(t, fake)
			ts, _ := up["tools"].([]any)
			if len(ts) != 2 || up["tool_choice"] != "required" || ts[0].(map[string]any)["function"].(map[string]any)["name"] != "get_weather" {
				t.Errorf("upstream tools %s", fake.LastRequest().Body)
			}
		})
	}
}

// TestResponsesToolRoundTrip: the items of a tool loop's second leg reach
// the serve as Chat history — function_call items as the assistant's
// tool_calls (one message for a parallel batch), function_call_output as
// role "tool" messages — and the serve's answer comes back as text.
func TestResponsesToolRoundTrip(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	body := `{"model":"chat","input":[
		{"role":"user","content":"weather in Paris and Oslo?"},
		{"type":"function_call","id":"fc_1","call_id":"call_p","name":"get_weather","arguments":"{\"city\":\"Paris\"}","status":"completed"},
		{"type":"function_call","call_id":"call_o","name":"get_weather","arguments":{"city":"Oslo"}},
		{"type":"function_call_output","call_id":"call_p","output":"18C"},
		{"type":"function_call_output","call_id":"call_o","output":[{"type":"input_text","text":"9C"}]}
	],"tools":[{"type":"function","name":"get_weather"}]}`
	resp := post(t, t.Context(), base+"/v1/responses", body)
	got := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	var up struct {
		Messages []struct {
			Role       string
			Content    any
			ToolCallID string `json:"tool_call_id"`
			ToolCalls  []struct {
				ID       string
				Type     string
				Function struct{ Name, Arguments string }
			} `json:"tool_calls"`
		}
	}
	json.Unmarshal(fake.LastRequest().Body, &up)
	m := up.Messages
	if len(m) != 4 || m[0].Role != "user" || m[1].Role != "assistant" || len(m[1].ToolCalls) != 2 || m[1].Content != nil ||
		m[1].ToolCalls[0].ID != "call_p" || m[1].ToolCalls[0].Function.Arguments != `{"city":"Paris"}` ||
		m[1].ToolCalls[1].ID != "call_o" || m[1].ToolCalls[1].Function.Arguments != `{"city":"Oslo"}` || m[1].ToolCalls[1].Type != "function" ||
		m[2].Role != "tool" || m[2].ToolCallID != "call_p" || m[2].Content != "18C" ||
		m[3].Role != "tool" || m[3].ToolCallID != "call_o" || m[3].Content != "9C" {
		t.Errorf("upstream messages %s", fake.LastRequest().Body)
	}
	var r map[string]any
	json.Unmarshal([]byte(got), &r)
	if out := r["output"].([]any); len(out) != 1 || out[0].(map[string]any)["type"] != "message" {
		t.Errorf("answer %s", got)
	}
}

// TestResponsesRejections: every strict refusal of the Responses subset is a 400
// unsupported_feature in the Responses envelope naming the fields (sorted),
// answered before anything reaches the serve; malformed values are 400
// invalid_request_error.
func TestResponsesRejections(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	const in = `"model":"chat","input":"hi"`
	for _, tc := range []struct {
		name, body, wantType, wantMsg string
	}{
		{"unknown fields, sorted", `{` + in + `,"user":"u","previous_response_id":"resp_1"}`, "unsupported_feature", "unsupported Responses feature(s): previous_response_id, user"},
		{"store true", `{` + in + `,"store":true}`, "unsupported_feature", "store (only false)"},
		{"include", `{` + in + `,"include":["message.output_text.logprobs"]}`, "unsupported_feature", "include[0]"},
		{"reasoning effort", `{` + in + `,"reasoning":{"effort":"max"}}`, "unsupported_feature", "reasoning.effort"},
		{"reasoning key", `{` + in + `,"reasoning":{"generate_summary":"auto"}}`, "unsupported_feature", "reasoning.generate_summary"},
		{"parallel_tool_calls not a boolean", `{` + in + `,"parallel_tool_calls":1}`, "invalid_request_error", "parallel_tool_calls must be a boolean"},
		{"truncation auto", `{` + in + `,"truncation":"auto"}`, "unsupported_feature", "truncation"},
		{"unknown tool type", `{` + in + `,"tools":[{"type":"frobnicate"}]}`, "unsupported_feature", "tools[0].type (function, namespace, custom or a hosted tool)"},
		{"tool_choice hosted", `{` + in + `,"tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"file_search"}}`, "unsupported_feature", "tool_choice"},
		{"image input", `{"model":"chat","input":[{"role":"user","content":[{"type":"input_image","image_url":"data:image/png;base64,AA"}]}]}`, "unsupported_feature", "input[0].content[0].type"},
		{"unknown item", `{"model":"chat","input":[{"type":"item_reference","id":"x"}]}`, "unsupported_feature", "input[0].type"},
		{"text format", `{` + in + `,"text":{"format":{"type":"json_object"}}}`, "unsupported_feature", "text.format.type (only json_schema)"},
		{"text verbosity", `{` + in + `,"text":{"verbosity":"low"}}`, "unsupported_feature", "text.verbosity"},
		{"several, sorted", `{` + in + `,"truncation":"auto","store":true}`, "unsupported_feature", `store (only false), truncation (only "disabled")`},
		{"input missing", `{"model":"chat"}`, "invalid_request_error", "input is required"},
		{"model missing", `{"input":"hi"}`, "invalid_request_error", "model must be a non-empty string"},
		{"stream not a bool", `{` + in + `,"stream":"yes"}`, "invalid_request_error", "stream must be a boolean"},
		{"call without call_id", `{"model":"chat","input":[{"type":"function_call","name":"f"}]}`, "invalid_request_error", "input[0].call_id"},
		{"bad JSON", `{"model":`, "invalid_request_error", "JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+"/v1/responses", tc.body)
			body := readAll(t, resp)
			typ, msg := responsesError(t, body)
			if resp.StatusCode != 400 || typ != tc.wantType || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("%d %s, want 400 %s containing %q", resp.StatusCode, body, tc.wantType, tc.wantMsg)
			}
		})
	}
	if n := fake.Stats().Requests; n != 0 {
		t.Errorf("the serve saw %d refused requests", n)
	}
}

// TestResponsesErrors: failures before the first byte are HTTP errors in
// the Responses envelope with the router's statuses.
func TestResponsesErrors(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	for _, tc := range []struct {
		name     string
		mode     fakeserve.Mode
		body     string
		hdr      []string
		wantCode int
		wantType string
	}{
		{name: "unknown model", body: `{"model":"nope","input":"hi"}`, hdr: responsesAuth, wantCode: 404, wantType: "model_not_found"},
		{name: "no token", body: `{"model":"chat","input":"hi"}`, wantCode: 401, wantType: "authentication_error"},
		{name: "refused serve is exhaustion", mode: fakeserve.ModeRefuse, body: `{"model":"chat","input":"hi"}`, hdr: responsesAuth, wantCode: 503, wantType: "service_unavailable"},
		{name: "refused serve is exhaustion, streaming", mode: fakeserve.ModeRefuse, body: `{"model":"chat","stream":true,"input":"hi"}`, hdr: responsesAuth, wantCode: 503, wantType: "service_unavailable"},
		{name: "upstream 400 passes through", mode: fakeserve.ModeStatus400, body: `{"model":"chat","input":"hi"}`, hdr: responsesAuth, wantCode: 400, wantType: "invalid_request_error"},
		{name: "upstream 400 passes through, streaming", mode: fakeserve.ModeStatus400, body: `{"model":"chat","stream":true,"input":"hi"}`, hdr: responsesAuth, wantCode: 400, wantType: "invalid_request_error"},
		{name: "upstream 500", mode: fakeserve.ModeStatus500, body: `{"model":"chat","input":"hi"}`, hdr: responsesAuth, wantCode: 502, wantType: "upstream_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetMode(tc.mode)
			defer fake.SetMode(fakeserve.ModeOK)
			resp := post(t, t.Context(), base+"/v1/responses", tc.body, tc.hdr...)
			body := readAll(t, resp)
			if typ, _ := responsesError(t, body); resp.StatusCode != tc.wantCode || typ != tc.wantType {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, body, tc.wantCode, tc.wantType)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q: nothing may be streamed on failure", ct)
			}
			for _, leak := range []string{"127.0.0.1", "local-a", "served-model", "http://"} {
				if strings.Contains(body, leak) {
					t.Errorf("error body leaks %q: %s", leak, body)
				}
			}
		})
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/v1/responses", nil)
	req.Header.Set("Authorization", "Bearer "+routerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if typ, _ := responsesError(t, body); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || typ != "method_not_allowed" {
		t.Errorf("GET: %d Allow %q %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/healthz", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var health struct{ Dialects, Routes []string }
	json.Unmarshal([]byte(readAll(t, resp)), &health)
	if !slices.Contains(health.Routes, "/v1/responses") || !slices.Contains(health.Dialects, "responses") {
		t.Errorf("/healthz does not list the Responses dialect and route: %+v", health)
	}
}

// TestResponsesStreamBreaks: once 200 is sent, a serve that cuts, errors or
// sends garbage ends the stream with one "event: error" frame and never a
// response.completed.
func TestResponsesStreamBreaks(t *testing.T) {
	for _, mode := range []fakeserve.Mode{fakeserve.ModeCut, fakeserve.ModeMidstreamError, fakeserve.ModeMalformed} {
		t.Run(string(mode), func(t *testing.T) {
			_, url := startFake(t, fakeserve.Options{Mode: mode})
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			resp := post(t, t.Context(), base+"/v1/responses", `{"model":"chat","stream":true,"input":"hi"}`)
			body := readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			evs := responsesEvents(t, body)
			last := evs[len(evs)-1]
			if last.Type != "error" || last.Error["type"] != "upstream_error" || last.Error["message"] != "stream interrupted" {
				t.Errorf("last event %+v", last)
			}
			if slices.Contains(eventTypes(evs), "response.completed") || evs[0].Type != "response.created" {
				t.Errorf("events %v", eventTypes(evs))
			}
		})
	}
}

// TestResponsesClamp: the tier's max_output_tokens lowers the caller's
// max_output_tokens (sent upstream as max_completion_tokens) with the
// clamp headers, streamed or not, and a reply cut at the limit is
// "incomplete" with the official incomplete_details.
func TestResponsesClamp(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, oneTier(url, "max_output_tokens = 3"), routerOpts{})
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "non-streaming", true: "streaming"}[stream], func(t *testing.T) {
			resp := post(t, t.Context(), base+"/v1/responses", `{"model":"chat","max_output_tokens":100,"stream":`+map[bool]string{false: "false", true: "true"}[stream]+`,"input":"hi"}`)
			body := readAll(t, resp)
			h := resp.Header
			if resp.StatusCode != 200 || h.Get("X-Anvil-Warning") != "max_tokens_clamped" || h.Get("X-Anvil-Max-Tokens-Requested") != "100" ||
				h.Get("X-Anvil-Max-Tokens-Applied") != "3" || h.Get("Warning") != `299 anvil-serving "max_tokens clamped from 100 to 3"` {
				t.Fatalf("%d %v %s", resp.StatusCode, h, body)
			}
			if up := respUpstream(t, fake); up["max_completion_tokens"] != 3.0 {
				t.Errorf("upstream %s", fake.LastRequest().Body)
			}
			final := map[string]any{}
			if stream {
				evs := responsesEvents(t, body)
				last := evs[len(evs)-1]
				if last.Type != "response.incomplete" {
					t.Errorf("terminal event %s", last.Type)
				}
				final = last.Response
			} else {
				json.Unmarshal([]byte(body), &final)
			}
			d, _ := final["incomplete_details"].(map[string]any)
			if final["status"] != "incomplete" || d["reason"] != "max_output_tokens" || outputText(final, 0) != "Hello from the" {
				t.Errorf("cut reply %v", final)
			}
		})
	}
}

// TestResponsesDisconnectCancelsUpstream: a caller that goes away
// mid-stream cancels the serve's generation.
func TestResponsesDisconnectCancelsUpstream(t *testing.T) {
	deltas := make([]string, 500)
	for i := range deltas {
		deltas[i] = "tok "
	}
	fake, url := startFake(t, fakeserve.Options{Deltas: deltas, Pace: 10 * time.Millisecond})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/responses", strings.NewReader(`{"model":"chat","stream":true,"input":"hi"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadAtLeast(resp.Body, make([]byte, 64), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer wcancel()
	if err := fake.WaitCancelled(wctx, 1); err != nil {
		t.Fatalf("serve never saw the cancellation: %v (stats %+v)", err, fake.Stats())
	}
	if st := fake.Stats(); st.Completed != 0 {
		t.Errorf("serve completed the generation anyway: %+v", st)
	}
}

// TestResponsesOnAnthropicTier: the handler is dialect-blind — on an
// Anthropic-dialect tier the same Chat body is translated by the relay and
// the serve's Anthropic events come back as the same Responses events.
func TestResponsesOnAnthropicTier(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Deltas: []string{"Hel", "lo"}})
	cfg := strings.Replace(oneTier(url, ""), `dialect = "openai"`, `dialect = "anthropic"`, 1)
	base := startRouter(t, cfg, routerOpts{})
	resp := post(t, t.Context(), base+"/v1/responses", `{"model":"chat","stream":true,"input":"hi","tools":[{"type":"function","name":"get_weather"}]}`)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if p := fake.LastRequest().Path; p != "/v1/messages" {
		t.Errorf("the serve was asked on %s", p)
	}
	evs := responsesEvents(t, body)
	final := evs[len(evs)-1]
	if final.Type != "response.completed" {
		t.Fatalf("events %v", eventTypes(evs))
	}
	checkCalls(t, final.Response, "get_weather")

	resp = post(t, t.Context(), base+"/v1/responses", `{"model":"chat","input":"hi"}`)
	body = readAll(t, resp)
	var r map[string]any
	if json.Unmarshal([]byte(body), &r) != nil || resp.StatusCode != 200 || outputText(r, 0) != "Hello" || r["model"] != "chat" {
		t.Errorf("non-streaming: %d %s", resp.StatusCode, body)
	}
}
