package fakeserve_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestReasoningAndParallelTools: Options.Reasoning streams reasoning
// deltas (vLLM's "reasoning" key) before the answer and fills a
// non-streaming reply's reasoning_content; Options.ParallelTools calls
// every declared tool, each streamed under its own index with the
// arguments split over several chunks.
func TestReasoningAndParallelTools(t *testing.T) {
	_, base, c := serve(t, fakeserve.Options{Reasoning: []string{"Think ", "hard."}, ParallelTools: true, Deltas: []string{"ok"}})
	const tools = `"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]`

	resp, data, err := do(t, c, http.MethodPost, base+"/v1/chat/completions", `{"stream":true,"messages":[],`+tools+`}`, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stream: %d %v", resp.StatusCode, err)
	}
	var reasoning string
	args := map[int]string{}
	names := map[int]string{}
	argChunks := 0
	for _, line := range strings.Split(string(data), "\n") {
		d, ok := strings.CutPrefix(line, "data: ")
		if !ok || d == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					Reasoning string `json:"reasoning"`
					ToolCalls []struct {
						Index    int
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				}
			}
		}
		if err := json.Unmarshal([]byte(d), &ch); err != nil {
			t.Fatalf("chunk %s: %v", d, err)
		}
		for _, c := range ch.Choices {
			if c.Delta.Reasoning != "" && len(names) > 0 {
				t.Errorf("reasoning after the calls started")
			}
			reasoning += c.Delta.Reasoning
			for _, tc := range c.Delta.ToolCalls {
				if tc.Function.Name != "" {
					names[tc.Index] = tc.Function.Name
				}
				if tc.Function.Arguments != "" {
					argChunks++
				}
				args[tc.Index] += tc.Function.Arguments
			}
		}
	}
	if reasoning != "Think hard." || names[0] != "a" || names[1] != "b" || args[0] != `{"city":"Paris"}` || args[1] != `{"city":"Paris"}` || argChunks != 6 {
		t.Errorf("stream: reasoning %q, names %v, args %v in %d chunks", reasoning, names, args, argChunks)
	}

	_, data, _ = do(t, c, http.MethodPost, base+"/v1/chat/completions", `{"messages":[],`+tools+`}`, nil)
	var reply struct {
		Choices []struct {
			Message struct {
				ReasoningContent string `json:"reasoning_content"`
				ToolCalls        []struct {
					ID       string
					Function struct{ Name string }
				} `json:"tool_calls"`
			}
		}
	}
	if err := json.Unmarshal(data, &reply); err != nil || len(reply.Choices) != 1 {
		t.Fatalf("non-stream %s: %v", data, err)
	}
	m := reply.Choices[0].Message
	if m.ReasoningContent != "Think hard." || len(m.ToolCalls) != 2 || m.ToolCalls[1].Function.Name != "b" || m.ToolCalls[0].ID == m.ToolCalls[1].ID {
		t.Errorf("non-stream: %s", data)
	}
}
