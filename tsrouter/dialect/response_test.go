package dialect_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// completion builds a chat.completion with one choice whose members are
// given as raw JSON.
func completion(message, choiceExtra, usage string) []byte {
	s := `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":` + message + choiceExtra + `}]`
	if usage != "" {
		s += `,"usage":` + usage
	}
	return []byte(s + `}`)
}

type anthropicReply struct {
	Content      []map[string]any `json:"content"`
	StopReason   string           `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        map[string]any   `json:"usage"`
}

func toAnthropic(t *testing.T, body []byte) anthropicReply {
	t.Helper()
	out, err := dialect.OpenAIResponseToAnthropic(body, "m")
	if err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var r anthropicReply
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestStopReasonMapping(t *testing.T) {
	text := `{"role":"assistant","content":"x"}`
	calls := `{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]}`
	for _, tc := range []struct {
		name, message, extra, want, seq string
	}{
		{"stop", text, `,"finish_reason":"stop"`, "end_turn", ""},
		{"null finish", text, `,"finish_reason":null`, "end_turn", ""},
		{"missing finish", text, ``, "end_turn", ""},
		{"unknown finish", text, `,"finish_reason":"abort"`, "end_turn", ""},
		{"length", text, `,"finish_reason":"length"`, "max_tokens", ""},
		{"model_length", text, `,"finish_reason":"model_length"`, "max_tokens", ""},
		{"tool_calls", calls, `,"finish_reason":"tool_calls"`, "tool_use", ""},
		{"function_call", calls, `,"finish_reason":"function_call"`, "tool_use", ""},
		{"stop with tool calls (vLLM forced tool)", calls, `,"finish_reason":"stop"`, "tool_use", ""},
		{"length with tool calls", calls, `,"finish_reason":"length"`, "max_tokens", ""},
		{"vLLM stop string", text, `,"finish_reason":"stop","stop_reason":"</answer>"`, "stop_sequence", "</answer>"},
		{"vLLM stop token id", text, `,"finish_reason":"stop","stop_reason":128001`, "end_turn", ""},
		{"SGLang matched_stop string", text, `,"finish_reason":"stop","matched_stop":"END"`, "stop_sequence", "END"},
		{"SGLang matched_stop token", text, `,"finish_reason":"stop","matched_stop":2`, "end_turn", ""},
		{"stop string but length", text, `,"finish_reason":"length","stop_reason":"END"`, "max_tokens", ""},
		{"already Anthropic", text, `,"finish_reason":"end_turn"`, "end_turn", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := toAnthropic(t, completion(tc.message, tc.extra, ""))
			seq := ""
			if r.StopSequence != nil {
				seq = *r.StopSequence
			}
			if r.StopReason != tc.want || seq != tc.seq {
				t.Errorf("stop_reason %q, stop_sequence %q; want %q, %q", r.StopReason, seq, tc.want, tc.seq)
			}
		})
	}
}

func TestUsageCachedTokens(t *testing.T) {
	msg := `{"role":"assistant","content":"x"}`
	for _, tc := range []struct {
		name, usage, want string
	}{
		{"no details", `{"prompt_tokens":10,"completion_tokens":2}`, `{"input_tokens":10,"output_tokens":2}`},
		{"null details", `{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":null}`, `{"input_tokens":10,"output_tokens":2}`},
		{"details without cached", `{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"audio_tokens":0}}`, `{"input_tokens":10,"output_tokens":2}`},
		{"cached zero is reported", `{"prompt_tokens":10,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}`, `{"input_tokens":10,"output_tokens":2,"cache_read_input_tokens":0}`},
		{"cached split out of input", `{"prompt_tokens":1000,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":768}}`, `{"input_tokens":232,"output_tokens":2,"cache_read_input_tokens":768}`},
		{"cached above prompt is capped", `{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":9}}`, `{"input_tokens":0,"output_tokens":2,"cache_read_input_tokens":5}`},
		{"absent usage: estimated output", ``, `{"input_tokens":0,"output_tokens":1}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := toAnthropic(t, completion(msg, `,"finish_reason":"stop"`, tc.usage))
			if got := strings.TrimSpace(mustJSON(r.Usage)); !jsonEqual(t, []byte(got), []byte(tc.want)) {
				t.Errorf("usage %s, want %s", got, tc.want)
			}
		})
	}
}

func TestToolInputFromArguments(t *testing.T) {
	for _, tc := range []struct {
		name, args, want string
	}{
		{"object string", `"{\"a\": [1, 2]}"`, `{"a":[1,2]}`},
		{"empty string", `""`, `{}`},
		{"null", `null`, `{}`},
		{"whitespace around object", `" {\"a\":1} "`, `{"a":1}`},
		{"object itself", `{"a":"b"}`, `{"a":"b"}`},
		{"truncated", `"{\"a\": \"b"`, `{"_unparsed_arguments":"{\"a\": \"b"}`},
		{"array", `"[1,2]"`, `{"_unparsed_arguments":"[1,2]"}`},
		{"bare string", `"hello"`, `{"_unparsed_arguments":"hello"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := `{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":` + tc.args + `}}]}`
			r := toAnthropic(t, completion(msg, `,"finish_reason":"tool_calls"`, ""))
			if len(r.Content) != 1 || r.Content[0]["type"] != "tool_use" {
				t.Fatalf("content %v", r.Content)
			}
			if got := strings.TrimSpace(mustJSON(r.Content[0]["input"])); !jsonEqual(t, []byte(got), []byte(tc.want)) {
				t.Errorf("input %s, want %s", got, tc.want)
			}
		})
	}
}

func TestResponseTextIsExact(t *testing.T) {
	for _, text := range []string{"  lead", "trail  ", "a   b", "\tcode\n\n    indented\n", "<html> & \"q\" \u2028 😀", ""} {
		msg := `{"role":"assistant","content":` + mustJSON(text) + `}`
		r := toAnthropic(t, completion(msg, `,"finish_reason":"stop"`, ""))
		if len(r.Content) != 1 || r.Content[0]["text"] != text {
			t.Errorf("text %q came back as %v", text, r.Content)
		}
	}
	// Content as parts (some serves) is concatenated.
	r := toAnthropic(t, completion(`{"role":"assistant","content":[{"type":"text","text":"a "},{"type":"image_url"},{"type":"text","text":" b"}]}`, "", ""))
	if r.Content[0]["text"] != "a  b" {
		t.Errorf("parts content %v", r.Content)
	}
}

func TestResponseErrors(t *testing.T) {
	for _, body := range []string{
		``, `nope`, `[]`, `{}`, `{"choices":[]}`, `{"choices":null}`,
		`{"error":{"message":"boom","type":"InternalServerError","code":500}}`,
		`{"object":"error","message":"queue full","type":"ServiceUnavailable","code":503}`,
	} {
		if _, err := dialect.OpenAIResponseToAnthropic([]byte(body), "m"); !errors.Is(err, dialect.ErrUpstreamReply) {
			t.Errorf("OpenAIResponseToAnthropic(%s): %v", body, err)
		}
	}
	for _, body := range []string{``, `{}`, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, `{"type":"message","content":null}`} {
		if _, err := dialect.AnthropicResponseToOpenAI([]byte(body), "m"); !errors.Is(err, dialect.ErrUpstreamReply) {
			t.Errorf("AnthropicResponseToOpenAI(%s): %v", body, err)
		}
	}
}

func TestFinishReasonMappingToOpenAI(t *testing.T) {
	for _, tc := range []struct{ stop, content, want string }{
		{"end_turn", `[{"type":"text","text":"x"}]`, "stop"},
		{"stop_sequence", `[{"type":"text","text":"x"}]`, "stop"},
		{"max_tokens", `[{"type":"text","text":"x"}]`, "length"},
		{"tool_use", `[{"type":"tool_use","id":"t","name":"f","input":{}}]`, "tool_calls"},
		{"pause_turn", `[{"type":"text","text":"x"}]`, "stop"},
		{"refusal", `[]`, "stop"},
		{"end_turn", `[{"type":"tool_use","id":"t","name":"f","input":{}}]`, "tool_calls"},
		{"max_tokens", `[{"type":"tool_use","id":"t","name":"f","input":{}}]`, "length"},
	} {
		body := `{"type":"message","role":"assistant","content":` + tc.content + `,"stop_reason":"` + tc.stop + `"}`
		out, err := dialect.AnthropicResponseToOpenAI([]byte(body), "m")
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
				Message      struct {
					Content *string
				}
			}
		}
		json.Unmarshal(out, &r)
		if r.Choices[0].FinishReason != tc.want {
			t.Errorf("%s → %q, want %q", tc.stop, r.Choices[0].FinishReason, tc.want)
		}
		if tc.stop == "refusal" && (r.Choices[0].Message.Content == nil || *r.Choices[0].Message.Content != "") {
			t.Errorf("empty reply content %v, want \"\"", r.Choices[0].Message.Content)
		}
	}
}
