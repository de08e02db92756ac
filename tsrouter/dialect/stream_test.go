package dialect_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

func chunk(delta string) string {
	return `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":null}]}`
}

func TestAnthropicStreamLifecycle(t *testing.T) {
	info := dialect.RequestInfo{Model: "claude", InputTokens: 7}
	t.Run("Start once", func(t *testing.T) {
		tr := dialect.NewAnthropicStream("claude", info)
		start := string(tr.Start())
		if !strings.HasPrefix(start, "event: message_start\n") || !strings.HasSuffix(start, "event: ping\ndata: {\"type\":\"ping\"}\n\n") || !strings.Contains(start, `"input_tokens":7,"output_tokens":0`) {
			t.Errorf("start %q", start)
		}
		if again := tr.Start(); again != nil {
			t.Errorf("second Start %q", again)
		}
		b, _ := tr.Chunk([]byte(chunk(`{"role":"assistant","content":""}`)))
		if len(b) != 0 {
			t.Errorf("role chunk gave %q", b)
		}
	})
	t.Run("Chunk starts the message itself", func(t *testing.T) {
		tr := dialect.NewAnthropicStream("claude", info)
		b, _ := tr.Chunk([]byte(chunk(`{"content":"hi"}`)))
		out := string(b) // valid until the next call
		out += string(tr.Finish())
		if m := replayAnthropic(t, []byte(out)); m.Content[0]["text"] != "hi" {
			t.Errorf("content %v", m.Content)
		}
		if tr.Start() != nil || tr.Finish() != nil {
			t.Error("Start or Finish emitted after the end")
		}
		if b, err := tr.Chunk([]byte(chunk(`{"content":"late"}`))); len(b) != 0 || err != nil {
			t.Errorf("Chunk after Finish: %q, %v", b, err)
		}
	})
	t.Run("Finish alone is a whole message", func(t *testing.T) {
		tr := dialect.NewAnthropicStream("claude", info)
		m := replayAnthropic(t, tr.Finish())
		if len(m.Content) != 1 || m.Content[0]["text"] != "" || m.Stop != "end_turn" {
			t.Errorf("message %+v", m)
		}
	})
	t.Run("DONE and blank payloads are ignored", func(t *testing.T) {
		tr := dialect.NewAnthropicStream("claude", info)
		tr.Start()
		for _, d := range []string{"[DONE]", " [DONE]", "", "  "} {
			if b, err := tr.Chunk([]byte(d)); len(b) != 0 || err != nil {
				t.Errorf("Chunk(%q) = %q, %v", d, b, err)
			}
		}
	})
}

func TestAnthropicStreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
		want   error
	}{
		{"not JSON", []string{`{"choices":[`}, dialect.ErrMalformedEvent},
		{"not an object", []string{`[1]`}, dialect.ErrMalformedEvent},
		{"vLLM in-band error", []string{chunk(`{"content":"a"}`), `{"error":{"message":"x","code":500}}`}, dialect.ErrInBandError},
		{"SGLang in-band error", []string{`{"object":"error","message":"queue full","code":503}`}, dialect.ErrInBandError},
		{"tool call resumed after its block closed", []string{
			chunk(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}`),
			chunk(`{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"{}"}}]}`),
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}`),
		}, dialect.ErrMalformedEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := dialect.NewAnthropicStream("m", dialect.RequestInfo{})
			var err error
			for _, c := range tc.chunks {
				if _, err = tr.Chunk([]byte(c)); err != nil {
					break
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if got := string(tr.ErrorEvent()); got != "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"stream interrupted\"}}\n\n" {
				t.Errorf("error event %q", got)
			}
			if tr.Finish() != nil {
				t.Error("Finish after ErrorEvent emitted events")
			}
		})
	}
	t.Run("empty fragments for a closed call are harmless", func(t *testing.T) {
		tr := dialect.NewAnthropicStream("m", dialect.RequestInfo{})
		out, _ := tr.Chunk([]byte(chunk(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{}"}}]}`)))
		all := string(out)
		for _, c := range []string{
			chunk(`{"content":"then text"}`),
			chunk(`{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":""}}]}`),
		} {
			b, err := tr.Chunk([]byte(c))
			if err != nil {
				t.Fatal(err)
			}
			all += string(b)
		}
		m := replayAnthropic(t, []byte(all+string(tr.Finish())))
		if len(m.Content) != 2 || m.Stop != "tool_use" {
			t.Errorf("message %+v", m)
		}
	})
}

// reply is one answer a serve might give, used to check that the streaming
// and non-streaming translations agree however the stream is cut up.
type reply struct {
	reasoning, text string
	calls           [][3]string // id, name, arguments
	finish          string
	stopReason      string // vLLM's matched stop string
	usage           string
}

var replies = []reply{
	{text: "Hello,  world!\n\tIndented \"quoted\" é 😀 <tag> & \\ done ", finish: "stop", usage: `{"prompt_tokens":30,"completion_tokens":12}`},
	{reasoning: "Think: 17*23 = 391.\n", text: "391", finish: "stop", usage: `{"prompt_tokens":30,"completion_tokens":12,"prompt_tokens_details":{"cached_tokens":16}}`},
	{text: "Checking.", calls: [][3]string{{"call_a", "get_weather", `{"city": "São Paulo", "note": "line1\nline2 \"q\" \\ 😀"}`}, {"call_b", "now", `{}`}}, finish: "tool_calls", usage: `{"prompt_tokens":300,"completion_tokens":40}`},
	{calls: [][3]string{{"call_c", "write", `{"path":"a.txt","content":"x\ty"}`}}, finish: "stop"},
	{text: "one two", finish: "stop", stopReason: "END", usage: `{"prompt_tokens":3,"completion_tokens":2}`},
	{text: "cut", calls: [][3]string{{"call_d", "f", `{"a": [1, 2, {"b": null}]}`}}, finish: "length"},
}

func (r reply) completion() []byte {
	msg := map[string]any{"role": "assistant", "content": r.text}
	if r.reasoning != "" {
		msg["reasoning"] = r.reasoning
	}
	var calls []map[string]any
	for _, c := range r.calls {
		calls = append(calls, map[string]any{"id": c[0], "type": "function", "function": map[string]any{"name": c[1], "arguments": c[2]}})
	}
	if calls != nil {
		msg["tool_calls"] = calls
	}
	choice := map[string]any{"index": 0, "message": msg, "finish_reason": r.finish}
	if r.stopReason != "" {
		choice["stop_reason"] = r.stopReason
	}
	body := map[string]any{"id": "x", "object": "chat.completion", "choices": []any{choice}}
	if r.usage != "" {
		body["usage"] = json.RawMessage(r.usage)
	}
	return []byte(mustJSON(body))
}

// pieces cuts s into runs of n runes (a serve never splits a character).
func pieces(s string, n int) []string {
	var out []string
	rs := []rune(s)
	for len(rs) > 0 {
		k := min(n, len(rs))
		out = append(out, string(rs[:k]))
		rs = rs[k:]
	}
	return out
}

// chunks renders r as a serve's chunk payloads, every string cut into runs
// of n runes: a role chunk, reasoning, text, each call's header then its
// argument fragments, the finish chunk and the usage chunk.
func (r reply) chunks(n int) []string {
	out := []string{chunk(`{"role":"assistant","content":""}`)}
	for _, p := range pieces(r.reasoning, n) {
		out = append(out, chunk(`{"reasoning":`+strings.TrimSpace(mustJSON(p))+`}`))
	}
	for _, p := range pieces(r.text, n) {
		out = append(out, chunk(`{"content":`+strings.TrimSpace(mustJSON(p))+`}`))
	}
	for i, c := range r.calls {
		out = append(out, chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]}`, i, c[0], c[1])))
		for _, p := range pieces(c[2], n) {
			out = append(out, chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"function":{"arguments":%s}}]}`, i, strings.TrimSpace(mustJSON(p)))))
		}
	}
	final := `{"index":0,"delta":{},"finish_reason":"` + r.finish + `"`
	if r.stopReason != "" {
		final += `,"stop_reason":` + strings.TrimSpace(mustJSON(r.stopReason))
	}
	out = append(out, `{"id":"c","choices":[`+final+`}]}`)
	if r.usage != "" {
		out = append(out, `{"id":"c","choices":[],"usage":`+r.usage+`}`)
	}
	return out
}

func TestStreamMatchesNonStreaming(t *testing.T) {
	for i, r := range replies {
		want := toAnthropic(t, r.completion())
		var wantContent []map[string]any
		json.Unmarshal([]byte(mustJSON(want.Content)), &wantContent)
		for _, n := range []int{1, 2, 3, 5, 1 << 20} {
			t.Run(fmt.Sprintf("reply%d/runs of %d", i, n), func(t *testing.T) {
				tr := dialect.NewAnthropicStream("m", dialect.RequestInfo{})
				out := tr.Start()
				for _, c := range r.chunks(n) {
					b, err := tr.Chunk([]byte(c))
					if err != nil {
						t.Fatalf("%s: %v", c, err)
					}
					out = append(out, b...)
				}
				got := replayAnthropic(t, append(out, tr.Finish()...))
				if !reflect.DeepEqual(got.Content, wantContent) {
					t.Errorf("content\n got %s\nwant %s", mustJSON(got.Content), mustJSON(wantContent))
				}
				seq, _ := got.StopSeq.(string)
				wantSeq := ""
				if want.StopSequence != nil {
					wantSeq = *want.StopSequence
				}
				if got.Stop != want.StopReason || seq != wantSeq {
					t.Errorf("stop %v %q, want %v %q", got.Stop, seq, want.StopReason, wantSeq)
				}
				if r.usage != "" && !reflect.DeepEqual(got.Usage, want.Usage) {
					t.Errorf("usage %v, want %v", got.Usage, want.Usage)
				}
			})
		}
	}
}

// anthropicEvents renders r as an Anthropic serve's event payloads.
func (r reply) anthropicEvents(n int) (events []string, message []byte) {
	ev := func(v any) { events = append(events, strings.TrimSpace(mustJSON(v))) }
	ev(map[string]any{"type": "message_start", "message": map[string]any{"id": "msg_up", "type": "message", "role": "assistant", "content": []any{}, "usage": map[string]any{"input_tokens": 11, "output_tokens": 1}}})
	var content []any
	idx := 0
	if r.reasoning != "" {
		ev(map[string]any{"type": "content_block_start", "index": idx, "content_block": map[string]any{"type": "thinking", "thinking": "", "signature": ""}})
		for _, p := range pieces(r.reasoning, n) {
			ev(map[string]any{"type": "content_block_delta", "index": idx, "delta": map[string]any{"type": "thinking_delta", "thinking": p}})
		}
		ev(map[string]any{"type": "content_block_stop", "index": idx})
		content = append(content, map[string]any{"type": "thinking", "thinking": r.reasoning, "signature": "sig"})
		idx++
	}
	if r.text != "" {
		ev(map[string]any{"type": "content_block_start", "index": idx, "content_block": map[string]any{"type": "text", "text": ""}})
		for _, p := range pieces(r.text, n) {
			ev(map[string]any{"type": "content_block_delta", "index": idx, "delta": map[string]any{"type": "text_delta", "text": p}})
		}
		ev(map[string]any{"type": "content_block_stop", "index": idx})
		content = append(content, map[string]any{"type": "text", "text": r.text})
		idx++
	}
	for _, c := range r.calls {
		ev(map[string]any{"type": "content_block_start", "index": idx, "content_block": map[string]any{"type": "tool_use", "id": c[0], "name": c[1], "input": map[string]any{}}})
		for _, p := range pieces(c[2], n) {
			ev(map[string]any{"type": "content_block_delta", "index": idx, "delta": map[string]any{"type": "input_json_delta", "partial_json": p}})
		}
		ev(map[string]any{"type": "content_block_stop", "index": idx})
		content = append(content, map[string]any{"type": "tool_use", "id": c[0], "name": c[1], "input": json.RawMessage(c[2])})
		idx++
	}
	stop := map[string]string{"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}[r.finish]
	if len(r.calls) > 0 && stop == "end_turn" {
		stop = "tool_use"
	}
	ev(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": stop}, "usage": map[string]any{"output_tokens": 9}})
	ev(map[string]any{"type": "message_stop"})
	message = []byte(mustJSON(map[string]any{"type": "message", "role": "assistant", "content": content, "stop_reason": stop, "usage": map[string]any{"input_tokens": 11, "output_tokens": 9}}))
	return events, message
}

func TestOpenAIStreamMatchesNonStreaming(t *testing.T) {
	for i, r := range replies {
		for _, n := range []int{1, 4, 1 << 20} {
			t.Run(fmt.Sprintf("reply%d/runs of %d", i, n), func(t *testing.T) {
				events, message := r.anthropicEvents(n)
				body, err := dialect.AnthropicResponseToOpenAI(message, "m")
				if err != nil {
					t.Fatal(err)
				}
				var want struct {
					Choices []struct {
						Message struct {
							Content          *string
							ReasoningContent string `json:"reasoning_content"`
							ToolCalls        []struct {
								ID       string
								Function struct{ Name, Arguments string }
							} `json:"tool_calls"`
						}
						FinishReason string `json:"finish_reason"`
					}
					Usage map[string]any
				}
				json.Unmarshal(body, &want)
				tr := dialect.NewOpenAIStream("m", dialect.RequestInfo{IncludeUsage: true})
				out := tr.Start()
				for _, e := range events {
					b, err := tr.Event([]byte(e))
					if err != nil {
						t.Fatalf("%s: %v", e, err)
					}
					out = append(out, b...)
				}
				got := replayOpenAI(t, append(out, tr.Finish()...))
				w := want.Choices[0]
				wantText := ""
				if w.Message.Content != nil {
					wantText = *w.Message.Content
				}
				if !got.Done || got.Role != "assistant" || got.Content != wantText || got.Reasoning != w.Message.ReasoningContent || got.Finish != w.FinishReason {
					t.Errorf("got %+v\nwant %s", got, body)
				}
				if len(got.Calls) != len(w.Message.ToolCalls) {
					t.Fatalf("calls %v, want %s", got.Calls, body)
				}
				for j, c := range w.Message.ToolCalls {
					g := got.Calls[j]
					if g["id"] != c.ID || g["name"] != c.Function.Name || !jsonEqual(t, []byte(g["arguments"]), []byte(c.Function.Arguments)) {
						t.Errorf("call %d: %v, want %+v", j, g, c)
					}
				}
				if !reflect.DeepEqual(got.Usage, want.Usage) {
					t.Errorf("usage %v, want %v", got.Usage, want.Usage)
				}
			})
		}
	}
}

func TestOpenAIStreamLifecycle(t *testing.T) {
	tr := dialect.NewOpenAIStream("m", dialect.RequestInfo{InputTokens: 5, IncludeUsage: true})
	b, err := tr.Event([]byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`))
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), b...)
	for _, e := range []string{`{"type":"ping"}`, ``, `{"type":"content_block_delta","index":9,"delta":{"type":"text_delta","text":"orphan"}}`, `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a b"}}`} {
		b, err := tr.Event([]byte(e))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	r := replayOpenAI(t, append(out, tr.Finish()...))
	if r.Role != "assistant" || r.Content != "a b" || r.Finish != "stop" || r.Usage["prompt_tokens"] != 5.0 || r.Usage["completion_tokens"] != 2.0 {
		t.Errorf("reply %+v", r)
	}
	if tr.Start() != nil || tr.Finish() != nil {
		t.Error("emitted after the end")
	}
	if b, err := tr.Event([]byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}`)); len(b) != 0 || err != nil {
		t.Errorf("Event after Finish: %q, %v", b, err)
	}
	for _, bad := range []string{`{"type":`, `"x"`} {
		if _, err := dialect.NewOpenAIStream("m", dialect.RequestInfo{}).Event([]byte(bad)); !errors.Is(err, dialect.ErrMalformedEvent) {
			t.Errorf("Event(%s): %v", bad, err)
		}
	}
}

// Benchmarks: the stream translators run once per token of every
// translated stream.

func benchChunks(b *testing.B, setup []string, hot string) {
	tr := dialect.NewAnthropicStream("claude-sonnet-4-5", dialect.RequestInfo{})
	tr.Start()
	for _, c := range setup {
		if _, err := tr.Chunk([]byte(c)); err != nil {
			b.Fatal(err)
		}
	}
	data := []byte(hot)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Chunk(data); err != nil {
			b.Fatal(err)
		}
	}
}

// A vLLM text delta, as sent, with its usual members.
const vllmText = `{"id":"chatcmpl-8f1b2c3d4e5f","object":"chat.completion.chunk","created":1760000000,"model":"Qwen/Qwen3-32B","choices":[{"index":0,"delta":{"content":" the"},"logprobs":null,"finish_reason":null}]}`

func BenchmarkAnthropicStreamChunk(b *testing.B) {
	b.Run("text", func(b *testing.B) {
		benchChunks(b, []string{chunk(`{"content":"Hi"}`)}, vllmText)
	})
	b.Run("reasoning", func(b *testing.B) {
		benchChunks(b, []string{chunk(`{"reasoning":"Hm"}`)}, chunk(`{"reasoning":" so the"}`))
	})
	b.Run("tool_args", func(b *testing.B) {
		benchChunks(b, []string{chunk(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}`)},
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"city\": \"Pa"}}]}`))
	})
	b.Run("usage", func(b *testing.B) {
		benchChunks(b, nil, `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1200,"total_tokens":1240,"completion_tokens":40,"prompt_tokens_details":{"cached_tokens":1024}}}`)
	})
}

func BenchmarkOpenAIStreamEvent(b *testing.B) {
	tr := dialect.NewOpenAIStream("gpt-alias", dialect.RequestInfo{})
	tr.Start()
	tr.Event([]byte(`{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`))
	data := []byte(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" the"}}`)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Event(data); err != nil {
			b.Fatal(err)
		}
	}
}

// The request and reply translations run once per request; measured for
// scale.
func BenchmarkAnthropicToOpenAI(b *testing.B) {
	body, err := os.ReadFile("testdata/anthropic_to_openai/tools_multi_turn.in.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := dialect.AnthropicToOpenAI(body, dialect.ToOpenAIOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenAIResponseToAnthropic(b *testing.B) {
	body, err := os.ReadFile("testdata/openai_response_to_anthropic/tool_calls_parallel_cached.in.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dialect.OpenAIResponseToAnthropic(body, "m"); err != nil {
			b.Fatal(err)
		}
	}
}
