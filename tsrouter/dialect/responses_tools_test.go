package dialect_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// codexTools is a request declaring every tool kind Codex sends: a
// function, a namespace of functions, a free-form tool with a grammar and
// a hosted tool.
const codexTools = `{"model":"gpt-alias","input":"hi","stream":true,
"client_metadata":{"x-codex-turn-metadata":"{\"turn_id\":\"t1\"}","session_id":"s1"},
"tools":[
 {"type":"function","name":"exec_command","parameters":{"type":"object","properties":{"cmd":{"type":"string"}}}},
 {"type":"namespace","name":"multi_agent_v1","description":"agents","tools":[
   {"type":"function","name":"spawn_agent","description":"Spawn.","parameters":{"type":"object","properties":{"task":{"type":"string"}}}},
   {"type":"function","name":"wait"}]},
 {"type":"custom","name":"apply_patch","description":"Apply a patch.","format":{"type":"grammar","syntax":"lark","definition":"start: begin_patch"}},
 {"type":"web_search","external_web_access":true},
 {"type":"web_search"}]}`

// chatReq is the part of the translated Chat body the tests read.
type chatReq struct {
	Messages []struct {
		Role       string `json:"role"`
		Content    any    `json:"content"`
		ToolCallID string `json:"tool_call_id"`
		ToolCalls  []struct {
			ID       string `json:"id"`
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
}

func TestResponsesCodexToolsRequest(t *testing.T) {
	out, info, err := dialect.ResponsesToOpenAI([]byte(codexTools))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "client_metadata") || strings.Contains(string(out), "turn_id") {
		t.Errorf("client_metadata reached the serve: %s", out)
	}
	var req chatReq
	if err := json.Unmarshal(out, &req); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range req.Tools {
		names = append(names, tl.Function.Name)
	}
	if got, want := strings.Join(names, ","), "exec_command,multi_agent_v1__spawn_agent,multi_agent_v1__wait,apply_patch"; got != want {
		t.Errorf("serve tools %s, want %s", got, want)
	}
	custom := req.Tools[3].Function
	if !strings.Contains(custom.Description, "Apply a patch.") || !strings.Contains(custom.Description, "start: begin_patch") || !strings.Contains(custom.Description, "lark") {
		t.Errorf("custom tool description lost the format: %q", custom.Description)
	}
	if !strings.Contains(string(custom.Parameters), `"required":["input"]`) {
		t.Errorf("custom tool parameters %s", custom.Parameters)
	}
	if got := strings.Join(info.DroppedTools, ","); got != "web_search" {
		t.Errorf("DroppedTools %q, want web_search once", got)
	}
	want := map[string]dialect.ToolOrigin{
		"multi_agent_v1__spawn_agent": {Namespace: "multi_agent_v1", Name: "spawn_agent"},
		"multi_agent_v1__wait":        {Namespace: "multi_agent_v1", Name: "wait"},
		"apply_patch":                 {Name: "apply_patch", Custom: true},
	}
	if len(info.ToolOrigins) != len(want) {
		t.Errorf("ToolOrigins %v", info.ToolOrigins)
	}
	for k, v := range want {
		if info.ToolOrigins[k] != v {
			t.Errorf("ToolOrigins[%s] = %+v, want %+v", k, info.ToolOrigins[k], v)
		}
	}
}

func TestResponsesHostedToolsPolicy(t *testing.T) {
	_, _, err := dialect.ResponsesToOpenAIWith([]byte(codexTools), dialect.ResponsesOptions{Hosted: dialect.HostedRefuse})
	var ue *dialect.UnsupportedError
	if !errors.As(err, &ue) {
		t.Fatalf("err = %v, want *UnsupportedError", err)
	}
	if len(ue.Fields) != 2 || !strings.HasPrefix(ue.Fields[0], "tools[3].type (web_search is a hosted tool") || !strings.HasPrefix(ue.Fields[1], "tools[4].type") {
		t.Errorf("fields %q", ue.Fields)
	}
}

func TestResponsesCodexToolRejections(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"client_metadata not an object", `{"model":"m","input":"hi","client_metadata":"x"}`, "client_metadata must be an object"},
		{"client_metadata value not a string", `{"model":"m","input":"hi","client_metadata":{"a":1}}`, "client_metadata.a must be a string"},
		{"client_metadata value too long", `{"model":"m","input":"hi","client_metadata":{"a":"` + strings.Repeat("x", 9000) + `"}}`, "client_metadata.a must be a string"},
		{"flattened name collides", `{"model":"m","input":"hi","tools":[{"type":"function","name":"ns__f"},{"type":"namespace","name":"ns","tools":[{"type":"function","name":"f"}]}]}`, "declared twice"},
		{"namespace without name", `{"model":"m","input":"hi","tools":[{"type":"namespace","tools":[]}]}`, "tools[0].name"},
		{"custom without name", `{"model":"m","input":"hi","tools":[{"type":"custom"}]}`, "tools[0].name"},
		{"custom call input not a string", `{"model":"m","input":[{"type":"custom_tool_call","call_id":"c","name":"p","input":1}]}`, "input[0].input must be a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := dialect.ResponsesToOpenAI([]byte(tc.body))
			var re *dialect.RequestError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want a RequestError containing %q", err, tc.want)
			}
		})
	}
}

// TestResponsesCodexToolHistory: the calls Codex sends back on the next
// turn (a namespaced function_call, a custom_tool_call) reach the serve
// under the names it was offered, with their outputs as tool messages.
func TestResponsesCodexToolHistory(t *testing.T) {
	body := `{"model":"chat","input":[
{"type":"message","role":"user","content":"go"},
{"type":"function_call","call_id":"c1","name":"spawn_agent","namespace":"multi_agent_v1","arguments":"{\"task\":\"x\"}"},
{"type":"custom_tool_call","call_id":"c2","name":"apply_patch","input":"*** Begin Patch\n*** End Patch","status":"completed"},
{"type":"function_call_output","call_id":"c1","output":"spawned"},
{"type":"custom_tool_call_output","call_id":"c2","output":"Done!"}]}`
	out, _, err := dialect.ResponsesToOpenAI([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var req chatReq
	json.Unmarshal(out, &req)
	if len(req.Messages) != 4 {
		t.Fatalf("messages %s", out)
	}
	calls := req.Messages[1].ToolCalls
	if req.Messages[1].Role != "assistant" || len(calls) != 2 {
		t.Fatalf("assistant turn %s", out)
	}
	if calls[0].ID != "c1" || calls[0].Function.Name != "multi_agent_v1__spawn_agent" || calls[0].Function.Arguments != `{"task":"x"}` {
		t.Errorf("namespaced call %+v", calls[0])
	}
	var args struct{ Input string }
	json.Unmarshal([]byte(calls[1].Function.Arguments), &args)
	if calls[1].ID != "c2" || calls[1].Function.Name != "apply_patch" || args.Input != "*** Begin Patch\n*** End Patch" {
		t.Errorf("custom call %+v", calls[1])
	}
	for i, want := range []struct{ id, text string }{{"c1", "spawned"}, {"c2", "Done!"}} {
		m := req.Messages[2+i]
		if m.Role != "tool" || m.ToolCallID != want.id || m.Content != want.text {
			t.Errorf("tool message %d: %+v", i, m)
		}
	}
}

// codexInfo is the RequestInfo of codexTools.
func codexInfo(t *testing.T) dialect.RequestInfo {
	_, info, err := dialect.ResponsesToOpenAI([]byte(codexTools))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestResponsesCodexCallsReply: a non-streamed reply's calls of a
// namespace member and of a custom tool come back in the form Codex
// declared them.
func TestResponsesCodexCallsReply(t *testing.T) {
	reply := `{"id":"x","object":"chat.completion","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[
{"id":"c1","type":"function","function":{"name":"multi_agent_v1__spawn_agent","arguments":"{\"task\":\"t\"}"}},
{"id":"c2","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin Patch\\n+x\\n*** End Patch\"}"}},
{"id":"c3","type":"function","function":{"name":"exec_command","arguments":"{}"}}]}}]}`
	out, err := dialect.OpenAIResponseToResponses([]byte(reply), codexInfo(t))
	if err != nil {
		t.Fatal(err)
	}
	var r struct{ Output []map[string]any }
	json.Unmarshal(out, &r)
	if len(r.Output) != 3 {
		t.Fatalf("output %s", out)
	}
	ns, custom, plain := r.Output[0], r.Output[1], r.Output[2]
	if ns["type"] != "function_call" || ns["name"] != "spawn_agent" || ns["namespace"] != "multi_agent_v1" || ns["arguments"] != `{"task":"t"}` || ns["call_id"] != "c1" {
		t.Errorf("namespaced call %v", ns)
	}
	if custom["type"] != "custom_tool_call" || custom["name"] != "apply_patch" || custom["input"] != "*** Begin Patch\n+x\n*** End Patch" || custom["call_id"] != "c2" || !strings.HasPrefix(custom["id"].(string), "ctc_") {
		t.Errorf("custom call %v", custom)
	}
	if _, has := plain["namespace"]; has || plain["name"] != "exec_command" {
		t.Errorf("plain call %v", plain)
	}
}

// TestResponsesCodexCallsStream: streamed, a namespaced call keeps its
// argument deltas and carries name and namespace; a custom tool's call is
// a custom_tool_call item whose input arrives as
// response.custom_tool_call_input.delta and .done.
func TestResponsesCodexCallsStream(t *testing.T) {
	chunks := []string{
		`{"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"multi_agent_v1__spawn_agent","arguments":""}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"task\":"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"t\"}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"c2","type":"function","function":{"name":"apply_patch","arguments":"{\"input\":\"*** Begin"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":" Patch\\n\\\"q\\\"\"}"}}]}}]}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
	}
	info := codexInfo(t)
	tr := dialect.NewResponsesStream(info)
	out := tr.Start()
	for _, c := range chunks {
		b, err := tr.Chunk([]byte(c))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	out = append(out, tr.Finish()...)
	replayResponses(t, out)
	events, _ := parseSSE(t, out)
	var customDeltas, customDone, argDeltas int
	var final map[string]any
	for _, ev := range events {
		var d map[string]any
		json.Unmarshal([]byte(ev.data), &d)
		switch d["type"] {
		case "response.custom_tool_call_input.delta":
			customDeltas++
			if d["delta"] != "*** Begin Patch\n\"q\"" {
				t.Errorf("custom delta %q", d["delta"])
			}
		case "response.custom_tool_call_input.done":
			customDone++
			if d["input"] != "*** Begin Patch\n\"q\"" {
				t.Errorf("custom done %q", d["input"])
			}
		case "response.function_call_arguments.delta":
			argDeltas++
		case "response.completed":
			final = d["response"].(map[string]any)
		}
	}
	if customDeltas != 1 || customDone != 1 || argDeltas != 2 {
		t.Errorf("custom deltas %d, done %d, argument deltas %d; stream:\n%s", customDeltas, customDone, argDeltas, out)
	}
	items := final["output"].([]any)
	ns, custom := items[0].(map[string]any), items[1].(map[string]any)
	if ns["name"] != "spawn_agent" || ns["namespace"] != "multi_agent_v1" || ns["arguments"] != `{"task":"t"}` {
		t.Errorf("namespaced call %v", ns)
	}
	if custom["type"] != "custom_tool_call" || custom["input"] != "*** Begin Patch\n\"q\"" || custom["name"] != "apply_patch" {
		t.Errorf("custom call %v", custom)
	}
}
