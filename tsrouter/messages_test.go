package tsrouter_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

type anthropicError struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// sseEventNames lists the event: names of an SSE body in order.
func sseEventNames(body string) []string {
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestAnthropicMessages: Anthropic callers are served by an OpenAI serve,
// streamed and not, tool calls included, with Anthropic-shaped errors.
func TestAnthropicMessages(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Deltas: []string{"Hello", " there"}})
	base := startRouter(t, oneTier(url, ""), routerOpts{token: routerToken})
	auth := []string{"X-Api-Key", routerToken, "Anthropic-Version", "2023-06-01"}

	resp := post(t, t.Context(), base+"/v1/messages", `{"model":"chat","max_tokens":64,"system":"be brief","messages":[{"role":"user","content":"hi"}]}`, auth...)
	body := readAll(t, resp)
	var msg struct {
		Type       string `json:"type"`
		Model      string `json:"model"`
		StopReason string `json:"stop_reason"`
		Content    []struct{ Type, Text string }
	}
	json.Unmarshal([]byte(body), &msg)
	if resp.StatusCode != 200 || msg.Type != "message" || msg.Model != "chat" || msg.StopReason != "end_turn" || len(msg.Content) == 0 || msg.Content[0].Text != "Hello there" {
		t.Fatalf("non-streaming: %d %s", resp.StatusCode, body)
	}
	var upstream map[string]any
	json.Unmarshal(fake.LastRequest().Body, &upstream)
	if upstream["model"] != "served-model" || upstream["max_tokens"] != 64.0 {
		t.Errorf("upstream body: %s", fake.LastRequest().Body)
	}
	if msgs, _ := upstream["messages"].([]any); len(msgs) != 2 || msgs[0].(map[string]any)["role"] != "system" {
		t.Errorf("system prompt not carried: %v", upstream["messages"])
	}

	resp = post(t, t.Context(), base+"/v1/messages", `{"model":"chat","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, auth...)
	body = readAll(t, resp)
	names := sseEventNames(body)
	if resp.StatusCode != 200 || len(names) < 6 || names[0] != "message_start" || names[len(names)-1] != "message_stop" || !strings.Contains(body, `"text_delta"`) {
		t.Fatalf("streaming: %d %v\n%s", resp.StatusCode, names, body)
	}

	// Tools: the serve's streamed tool call arrives as tool_use with
	// input_json_delta events.
	tools := `{"model":"chat","max_tokens":64,"stream":true,"tools":[{"name":"get_weather","description":"w","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],"messages":[{"role":"user","content":"weather?"}]}`
	resp = post(t, t.Context(), base+"/v1/messages", tools, auth...)
	body = readAll(t, resp)
	if !strings.Contains(body, `"type":"tool_use"`) || !strings.Contains(body, `"input_json_delta"`) || !strings.Contains(body, `"stop_reason":"tool_use"`) {
		t.Errorf("tool stream: %s", body)
	}

	for _, tc := range []struct {
		name, body string
		hdr        []string
		want       int
	}{
		{"missing max_tokens", `{"model":"chat","messages":[]}`, auth, 400},
		{"unknown model", `{"model":"nope","max_tokens":5,"messages":[]}`, auth, 404},
		{"no token", `{"model":"chat","max_tokens":5,"messages":[]}`, nil, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), base+"/v1/messages", tc.body, tc.hdr...)
			body := readAll(t, resp)
			var e anthropicError
			if resp.StatusCode != tc.want || json.Unmarshal([]byte(body), &e) != nil || e.Type != "error" || e.Error.Type == "" {
				t.Errorf("%d %s, want %d in the Anthropic envelope", resp.StatusCode, body, tc.want)
			}
		})
	}
	resp = post(t, t.Context(), base+"/v1/messages/count_tokens", `{"model":"chat","messages":[{"role":"user","content":"one two three four"}]}`, auth...)
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"input_tokens":`) {
		t.Errorf("count_tokens: %d %s", resp.StatusCode, body)
	}

	// A refused serve is the exhaustion status, Anthropic-shaped.
	fake.SetMode(fakeserve.ModeStatus503)
	defer fake.SetMode(fakeserve.ModeOK)
	resp = post(t, t.Context(), base+"/v1/messages", `{"model":"chat","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, auth...)
	if body := readAll(t, resp); resp.StatusCode != 503 || !strings.Contains(body, `"type":"error"`) {
		t.Errorf("503: %d %s", resp.StatusCode, body)
	}
}
