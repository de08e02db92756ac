package fakeserve_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestToolResultIsQuoted: the last leg of a tool round trip (last message
// a tool result) is answered with text quoting the result, streamed or not,
// with or without tools — so client tool loops end; any other last message
// with tools still gets the tool call.
func TestToolResultIsQuoted(t *testing.T) {
	_, base, c := serve(t, fakeserve.Options{})
	const tools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]}`
	tests := []struct {
		name     string
		body     string
		wantText string // "" = a tool call is expected
	}{
		{"string result", `{"messages":[{"role":"user","content":"hi"},` + call + `,{"role":"tool","tool_call_id":"c1","content":"21 C"}],` + tools, "21 C"},
		{"list result, spaced JSON", `{"messages": [` + call + `, {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sun"}, {"type": "text", "text": "ny"}]}], ` + tools, "sunny"},
		{"no tools", `{"messages":[{"role":"tool","tool_call_id":"c1","content":"x"}]`, "x"},
		{"user after the result calls again", `{"messages":[{"role":"tool","tool_call_id":"c1","content":"x"},{"role":"user","content":"again"}],` + tools, ""},
		{"content mentioning tool is not a result", `{"messages":[{"role":"user","content":"\"tool\""}],` + tools, ""},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name + map[bool]string{false: "/non-stream", true: "/stream"}[stream]
			t.Run(name, func(t *testing.T) {
				body := tc.body + `}`
				if stream {
					body = tc.body + `,"stream":true}`
				}
				text, toolCalls, finish := chatAnswer(t, c, base, body, stream)
				if tc.wantText == "" {
					if toolCalls == 0 || finish != "tool_calls" {
						t.Errorf("want a tool call, got text %q finish %q", text, finish)
					}
					return
				}
				if want := fakeserve.ToolResultPrefix + tc.wantText; text != want || toolCalls != 0 || finish != "stop" {
					t.Errorf("text %q (%d tool calls, finish %q), want %q", text, toolCalls, finish, want)
				}
			})
		}
	}
}

// chatAnswer returns the assembled text, the number of tool call deltas
// (or calls) and the finish reason of one chat request.
func chatAnswer(t *testing.T, c *http.Client, base, body string, stream bool) (text string, toolCalls int, finish string) {
	t.Helper()
	if !stream {
		resp, data, err := do(t, c, http.MethodPost, base+"/v1/chat/completions", body, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d err %v: %s", resp.StatusCode, err, data)
		}
		var out struct {
			Choices []struct {
				Message struct {
					Content   *string           `json:"content"`
					ToolCalls []json.RawMessage `json:"tool_calls"`
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &out); err != nil || len(out.Choices) != 1 {
			t.Fatalf("reply %s: %v", data, err)
		}
		m := out.Choices[0].Message
		if m.Content != nil {
			text = *m.Content
		}
		return text, len(m.ToolCalls), out.Choices[0].FinishReason
	}
	resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/chat/completions", body, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	frames, err := readFrames(t, resp.Body)
	if err != nil || len(frames) == 0 || frames[len(frames)-1].data != "[DONE]" {
		t.Fatalf("frames %q err %v", datas(frames), err)
	}
	var sb strings.Builder
	for _, f := range frames[:len(frames)-1] {
		ch := parseChunk(t, f.data)
		if len(ch.Choices) == 0 {
			continue
		}
		c0 := ch.Choices[0]
		if c0.Delta.Content != nil {
			sb.WriteString(*c0.Delta.Content)
		}
		toolCalls += len(c0.Delta.ToolCalls)
		if c0.FinishReason != nil {
			finish = *c0.FinishReason
		}
	}
	return sb.String(), toolCalls, finish
}
