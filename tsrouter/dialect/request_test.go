package dialect_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// Only the required fields are enforced, and server-side threads refused
// (the router keeps no conversation); everything else malformed is skipped.
func TestAnthropicToOpenAIRejectsOnlyRequiredFields(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"no max_tokens", `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`, "max_tokens: field required"},
		{"null max_tokens", `{"max_tokens":null,"messages":[]}`, "max_tokens: field required"},
		{"empty body object", `{}`, "max_tokens: field required"},
		{"string max_tokens", `{"max_tokens":"100","messages":[]}`, "max_tokens: Input should be a positive integer"},
		{"zero max_tokens", `{"max_tokens":0,"messages":[]}`, "max_tokens: Input should be a positive integer"},
		{"fractional max_tokens", `{"max_tokens":1.5,"messages":[]}`, "max_tokens: Input should be a positive integer"},
		{"no messages", `{"max_tokens":10}`, "messages: field required"},
		{"messages not an array", `{"max_tokens":10,"messages":{"role":"user"}}`, "messages: field required"},
		{"array body", `[{"max_tokens":10}]`, "request body must be a JSON object"},
		{"not JSON", `max_tokens=10`, "request body must be a JSON object"},
		{"empty", ``, "request body must be a JSON object"},
		{"server-side thread", `{"max_tokens":10,"messages":[],"thread":{"type":"create"}}`, "thread: this endpoint keeps no conversation state; send the whole conversation in messages (with the SDK tool runner, set thread: false)"},
		{"thread continue", `{"max_tokens":10,"messages":[],"thread":{"type":"continue","previous_message_id":"msg_1"}}`, "thread: this endpoint keeps no conversation state; send the whole conversation in messages (with the SDK tool runner, set thread: false)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := dialect.AnthropicToOpenAI([]byte(tc.body), dialect.ToOpenAIOptions{})
			var re *dialect.RequestError
			if !errors.As(err, &re) || re.Message != tc.want {
				t.Fatalf("err = %v, want RequestError %q", err, tc.want)
			}
		})
	}
}

// translate runs AnthropicToOpenAI on a request with max_tokens and the
// given extra members, and decodes the result.
func translate(t *testing.T, extra string, opts dialect.ToOpenAIOptions) (map[string]any, dialect.RequestInfo) {
	t.Helper()
	body := `{"model":"claude","max_tokens":64,"messages":[{"role":"user","content":"hi"}]` + extra + `}`
	out, info, err := dialect.AnthropicToOpenAI([]byte(body), opts)
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	return m, info
}

func toolNames(m map[string]any) []string {
	var names []string
	tools, _ := m["tools"].([]any)
	for _, tl := range tools {
		names = append(names, tl.(map[string]any)["function"].(map[string]any)["name"].(string))
	}
	return names
}

func TestAnthropicToOpenAIToolsAndChoice(t *testing.T) {
	lookup := `{"name":"lookup","input_schema":{"type":"object"}}`
	for _, tc := range []struct {
		name, extra string
		tools       string // names joined with ","
		choice      string // JSON of tool_choice, "" if absent
		parallel    string // JSON of parallel_tool_calls, "" if absent
		hasTools    bool
		toolStruct  bool
	}{
		{"malformed entries skipped", `,"tools":[null,1,"x",{},{"name":""},{"name":"s","input_schema":[1]},{"name":"ok"}]`, "ok", "", "", true, true},
		{"server tools skipped", `,"tools":[{"type":"web_search_20250305","name":"web_search"},{"type":"text_editor_20250124","name":"str_replace_editor"},{"type":"custom","name":"c"},` + lookup + `]`, "c,lookup", "", "", true, true},
		{"only server tools: choice dropped", `,"tools":[{"type":"bash_20250124","name":"bash"}],"tool_choice":{"type":"any"}`, "", "", "", false, true},
		{"auto", `,"tools":[` + lookup + `],"tool_choice":{"type":"auto"}`, "lookup", `"auto"`, "", true, true},
		{"any, no parallel", `,"tools":[` + lookup + `],"tool_choice":{"type":"any","disable_parallel_tool_use":true}`, "lookup", `"required"`, "false", true, true},
		{"auto, no parallel", `,"tools":[` + lookup + `],"tool_choice":{"type":"auto","disable_parallel_tool_use":true}`, "lookup", `"auto"`, "false", true, true},
		{"none ignores parallel flag", `,"tools":[` + lookup + `],"tool_choice":{"type":"none","disable_parallel_tool_use":true}`, "lookup", `"none"`, "", true, true},
		{"named", `,"tools":[` + lookup + `],"tool_choice":{"type":"tool","name":"lookup"}`, "lookup", `{"function":{"name":"lookup"},"type":"function"}`, "", true, true},
		{"named without name dropped", `,"tools":[` + lookup + `],"tool_choice":{"type":"tool"}`, "lookup", "", "", true, true},
		{"unknown choice dropped", `,"tools":[` + lookup + `],"tool_choice":{"type":"sometimes"}`, "lookup", "", "", true, true},
		{"choice not an object", `,"tools":[` + lookup + `],"tool_choice":"auto"`, "lookup", "", "", true, true},
		{"tools not an array", `,"tools":{"name":"x"}`, "", "", "", false, false},
		{"no tools", ``, "", "", "", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, info := translate(t, tc.extra, dialect.ToOpenAIOptions{})
			if got := strings.Join(toolNames(m), ","); got != tc.tools {
				t.Errorf("tools = %q, want %q", got, tc.tools)
			}
			check := func(key, want string) {
				v, ok := m[key]
				got := ""
				if ok {
					got = mustJSON(v)
					got = strings.TrimSuffix(got, "\n")
				}
				if got != want {
					t.Errorf("%s = %s, want %s", key, got, want)
				}
			}
			check("tool_choice", tc.choice)
			check("parallel_tool_calls", tc.parallel)
			if info.HasTools != tc.hasTools || info.ToolStructure != tc.toolStruct {
				t.Errorf("HasTools, ToolStructure = %v, %v; want %v, %v", info.HasTools, info.ToolStructure, tc.hasTools, tc.toolStruct)
			}
		})
	}
}

func TestAnthropicToOpenAIThinkingStyles(t *testing.T) {
	for _, tc := range []struct {
		name     string
		thinking string
		style    dialect.ThinkingStyle
		kwargs   string
		effort   string
		on       bool
	}{
		{"kwargs on", `{"type":"enabled","budget_tokens":2048}`, dialect.ThinkingTemplateKwargs, `{"enable_thinking":true,"thinking":true}`, "", true},
		{"kwargs adaptive", `{"type":"adaptive"}`, dialect.ThinkingTemplateKwargs, `{"enable_thinking":true,"thinking":true}`, "", true},
		{"kwargs off", `{"type":"disabled"}`, dialect.ThinkingTemplateKwargs, `{"enable_thinking":false,"thinking":false}`, "", false},
		{"effort low", `{"type":"enabled","budget_tokens":1024}`, dialect.ThinkingReasoningEffort, "", "low", true},
		{"effort medium", `{"type":"enabled","budget_tokens":8000}`, dialect.ThinkingReasoningEffort, "", "medium", true},
		{"effort high", `{"type":"enabled","budget_tokens":32000}`, dialect.ThinkingReasoningEffort, "", "high", true},
		{"effort no budget", `{"type":"enabled"}`, dialect.ThinkingReasoningEffort, "", "medium", true},
		{"effort off sends nothing", `{"type":"disabled"}`, dialect.ThinkingReasoningEffort, "", "", false},
		{"omit", `{"type":"enabled","budget_tokens":2048}`, dialect.ThinkingOmit, "", "", true},
		{"malformed", `"yes"`, dialect.ThinkingTemplateKwargs, "", "", false},
		{"unknown type", `{"type":"maybe"}`, dialect.ThinkingTemplateKwargs, "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, info := translate(t, `,"thinking":`+tc.thinking, dialect.ToOpenAIOptions{Thinking: tc.style})
			kw := ""
			if v, ok := m["chat_template_kwargs"]; ok {
				kw = strings.TrimSuffix(mustJSON(v), "\n")
			}
			effort, _ := m["reasoning_effort"].(string)
			if kw != tc.kwargs || effort != tc.effort || info.Thinking != tc.on {
				t.Errorf("kwargs %s, effort %q, Thinking %v; want %s, %q, %v", kw, effort, info.Thinking, tc.kwargs, tc.effort, tc.on)
			}
		})
	}
}

func TestAnthropicToOpenAIOptionsAndDefaults(t *testing.T) {
	m, info := translate(t, ``, dialect.ToOpenAIOptions{Model: "Qwen/Qwen3-32B"})
	if m["model"] != "Qwen/Qwen3-32B" || info.Model != "claude" {
		t.Errorf("model %v, info.Model %q", m["model"], info.Model)
	}
	out, info, err := dialect.AnthropicToOpenAI([]byte(`{"max_tokens":5,"messages":[{"role":"user","content":"a <b> & c"}],"temperature":"hot","top_p":null,"stream":"yes"}`), dialect.ToOpenAIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Model != "claude" || info.Stream {
		t.Errorf("info %+v", info)
	}
	// Text is forwarded as written: no HTML escaping, no dropped knobs
	// turning into nulls.
	if s := string(out); !strings.Contains(s, `"a <b> & c"`) || strings.Contains(s, "temperature") || strings.Contains(s, "top_p") || strings.Contains(s, "stream_options") {
		t.Errorf("body %s", s)
	}
}

func TestCountTokens(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		// 3 words, 15 bytes: bytes/4 = 3.
		{"string", `{"messages":[{"role":"user","content":"hello big world"}]}`, 3},
		// 8 one-letter words beat 15 bytes/4.
		{"words win", `{"messages":[{"role":"user","content":"a b c d e f g h"}]}`, 8},
		// 40 bytes without spaces: bytes win.
		{"bytes win", `{"messages":[{"role":"user","content":"` + strings.Repeat("x", 40) + `"}]}`, 10},
		// System, both turns, tool input and result, and the tool
		// definition all count: 11 words, 58 bytes ("one two", "t",
		// "three four", {"type":"object"}, "five", "t", {"k":"v"},
		// "six seven").
		{"everything", `{"system":"one two","tools":[{"name":"t","description":"three four","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"five"},{"role":"assistant","content":[{"type":"tool_use","id":"x","name":"t","input":{"k":"v"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":"six seven"}]}]}`, 14},
		{"max_tokens not needed", `{"messages":[]}`, 0},
		{"multibyte counted in bytes", `{"messages":[{"role":"user","content":"` + strings.Repeat("é", 10) + `"}]}`, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := dialect.CountTokens([]byte(tc.body))
			if err != nil || n != tc.want {
				t.Fatalf("CountTokens = %d, %v; want %d", n, err, tc.want)
			}
			// The Messages translation reports the same estimate.
			withMax := strings.Replace(tc.body, "{", `{"max_tokens":1,`, 1)
			if _, info, err := dialect.AnthropicToOpenAI([]byte(withMax), dialect.ToOpenAIOptions{}); err != nil || info.InputTokens != n {
				t.Errorf("AnthropicToOpenAI InputTokens = %d, %v; want %d", info.InputTokens, err, n)
			}
		})
	}
	for _, bad := range []string{`[]`, `{"max_tokens":1}`, `nope`} {
		if _, err := dialect.CountTokens([]byte(bad)); err == nil {
			t.Errorf("CountTokens(%s): no error", bad)
		}
	}
}

func TestOpenAIToAnthropicEdges(t *testing.T) {
	run := func(t *testing.T, body string, opts dialect.ToAnthropicOptions) map[string]any {
		t.Helper()
		out, _, err := dialect.OpenAIToAnthropic([]byte(body), opts)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(out, &m)
		return m
	}
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	tool := `"tools":[{"type":"function","function":{"name":"f"}}]`
	t.Run("default max_tokens", func(t *testing.T) {
		if m := run(t, `{`+msgs+`}`, dialect.ToAnthropicOptions{}); m["max_tokens"] != 1024.0 {
			t.Errorf("max_tokens %v", m["max_tokens"])
		}
		if m := run(t, `{`+msgs+`,"max_tokens":0}`, dialect.ToAnthropicOptions{DefaultMaxTokens: 4096}); m["max_tokens"] != 4096.0 {
			t.Errorf("max_tokens %v", m["max_tokens"])
		}
	})
	t.Run("forced tool use wins over thinking", func(t *testing.T) {
		m := run(t, `{`+msgs+`,`+tool+`,"tool_choice":{"type":"function","function":{"name":"f"}},"reasoning_effort":"high","max_tokens":20000}`, dialect.ToAnthropicOptions{})
		if _, ok := m["thinking"]; ok || mustJSON(m["tool_choice"]) != `{"name":"f","type":"tool"}`+"\n" {
			t.Errorf("thinking %v, tool_choice %v", m["thinking"], m["tool_choice"])
		}
	})
	t.Run("thinking drops incompatible sampling", func(t *testing.T) {
		m := run(t, `{`+msgs+`,"reasoning_effort":"low","max_tokens":2000,"temperature":0.2,"top_k":5,"top_p":0.5}`, dialect.ToAnthropicOptions{})
		th, _ := m["thinking"].(map[string]any)
		if th["budget_tokens"] != 1024.0 || m["temperature"] != nil || m["top_k"] != nil || m["top_p"] != nil {
			t.Errorf("body %v", m)
		}
		m = run(t, `{`+msgs+`,"reasoning_effort":"low","max_tokens":2000,"top_p":0.97}`, dialect.ToAnthropicOptions{})
		if m["top_p"] != 0.97 {
			t.Errorf("top_p %v", m["top_p"])
		}
	})
	t.Run("budget that does not fit is dropped", func(t *testing.T) {
		if m := run(t, `{`+msgs+`,"reasoning_effort":"high","max_tokens":1000}`, dialect.ToAnthropicOptions{}); m["thinking"] != nil {
			t.Errorf("thinking %v", m["thinking"])
		}
	})
	t.Run("parallel off without choice", func(t *testing.T) {
		m := run(t, `{`+msgs+`,`+tool+`,"parallel_tool_calls":false}`, dialect.ToAnthropicOptions{})
		if mustJSON(m["tool_choice"]) != `{"disable_parallel_tool_use":true,"type":"auto"}`+"\n" {
			t.Errorf("tool_choice %v", m["tool_choice"])
		}
	})
	t.Run("choice without tools dropped", func(t *testing.T) {
		if m := run(t, `{`+msgs+`,"tool_choice":"required"}`, dialect.ToAnthropicOptions{}); m["tool_choice"] != nil {
			t.Errorf("tool_choice %v", m["tool_choice"])
		}
	})
	t.Run("model override", func(t *testing.T) {
		out, info, _ := dialect.OpenAIToAnthropic([]byte(`{"model":"Alias",`+msgs+`}`), dialect.ToAnthropicOptions{Model: "claude-sonnet-4-5"})
		if !strings.Contains(string(out), `"model":"claude-sonnet-4-5"`) || info.Model != "Alias" {
			t.Errorf("%s %q", out, info.Model)
		}
	})
	for _, bad := range []string{`{}`, `{"messages":"hi"}`, `[]`} {
		var re *dialect.RequestError
		if _, _, err := dialect.OpenAIToAnthropic([]byte(bad), dialect.ToAnthropicOptions{}); !errors.As(err, &re) {
			t.Errorf("OpenAIToAnthropic(%s): err %v", bad, err)
		}
	}
}

func TestToolResultErrorFlag(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{`"disk full"`, "Error: disk full"},
		{`""`, "Error"},
		{`[]`, "Error"},
		{`[{"type":"text","text":"a"},{"type":"text","text":"b"}]`, `Error: a\nb`},
	} {
		body := `{"max_tokens":9,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":` + tc.content + `}]}]}`
		out, _, err := dialect.AnthropicToOpenAI([]byte(body), dialect.ToOpenAIOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := `"messages":[{"role":"tool","content":"` + tc.want + `","tool_call_id":"t1"}]`
		if !strings.Contains(string(out), want) {
			t.Errorf("%s\n got %s\nwant %s", tc.content, out, want)
		}
	}
}
