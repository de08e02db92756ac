package dialect_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/dialect"
)

// Responses goldens. The serve replies and streams of the reply and
// stream directions are those collected for the Anthropic direction
// (copied, so each directory stands alone) plus a few of their own.

var (
	responsesID = regexp.MustCompile(`\b(resp_|rs_|fc_)[0-9a-f]{24}\b`)
	createdAtTS = regexp.MustCompile(`"created_at":[0-9]+`)
)

func normalizeResponses(b []byte) []byte {
	b = responsesID.ReplaceAll(b, []byte("${1}GENERATED"))
	return createdAtTS.ReplaceAll(b, []byte(`"created_at":0`))
}

func TestGoldenResponsesToOpenAI(t *testing.T) {
	dir := "responses_to_openai"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, info, err := dialect.ResponsesToOpenAI(in)
			if err != nil {
				t.Fatal(err)
			}
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), []byte(mustJSON(requestGolden{out, info})))
		})
	}
}

func TestGoldenOpenAIResponseToResponses(t *testing.T) {
	dir := "openai_response_to_responses"
	for _, name := range goldenCases(t, dir, "json") {
		t.Run(name, func(t *testing.T) {
			in := readFile(t, filepath.Join("testdata", dir, name+".in.json"))
			out, err := dialect.OpenAIResponseToResponses(in, dialect.RequestInfo{Model: "gpt-alias", InputTokens: 42})
			if err != nil {
				t.Fatal(err)
			}
			checkResponseObject(t, out)
			checkJSONGolden(t, filepath.Join("testdata", dir, name+".want.json"), normalizeResponses(out))
		})
	}
}

// translateToResponses runs a serve's SSE through a ResponsesStream the way
// the handler does: Start after the first event, Chunk per event until
// [DONE], Finish — or ErrorEvent on an error.
func translateToResponses(t *testing.T, in []byte) []byte {
	t.Helper()
	events, params := parseSSE(t, in)
	tr := dialect.NewResponsesStream(dialect.RequestInfo{Model: "gpt-alias", Stream: true, InputTokens: intParam(t, params, "input_tokens", 42)})
	var out []byte
	for i, ev := range events {
		if ev.data == "[DONE]" {
			break
		}
		if i == 0 {
			out = append(out, tr.Start()...)
		}
		b, err := tr.Chunk([]byte(ev.data))
		out = append(out, b...)
		if err != nil {
			return append(out, tr.ErrorEvent()...)
		}
	}
	return append(out, tr.Finish()...)
}

func TestGoldenOpenAIStreamToResponses(t *testing.T) {
	dir := "openai_stream_to_responses"
	for _, name := range goldenCases(t, dir, "sse") {
		t.Run(name, func(t *testing.T) {
			out := translateToResponses(t, readFile(t, filepath.Join("testdata", dir, name+".in.sse")))
			replayResponses(t, out)
			checkTextGolden(t, filepath.Join("testdata", dir, name+".want.sse"), normalizeResponses(out))
		})
	}
}

// TestResponsesStreamDetails pins what the goldens show, so a regenerated
// golden cannot silently lose it: arguments stream per fragment, parallel
// calls are separate items with unique call_ids, reasoning is kept, usage
// details appear only when the serve reported them, and a cut reply is
// incomplete.
func TestResponsesStreamDetails(t *testing.T) {
	read := func(name string) []byte {
		return readFile(t, filepath.Join("testdata", "openai_stream_to_responses", name+".in.sse"))
	}
	r := replayResponses(t, translateToResponses(t, read("reasoning_text_parallel_tools")))
	if r.terminal != "response.completed" || r.counts["response.function_call_arguments.delta"] != 4 || r.counts["response.reasoning_text.delta"] != 2 {
		t.Errorf("terminal %s, counts %v", r.terminal, r.counts)
	}
	out := r.response["output"].([]any)
	if len(out) != 4 {
		t.Fatalf("want reasoning, message and two calls, got %v", out)
	}
	types := []string{}
	for _, it := range out {
		types = append(types, it.(map[string]any)["type"].(string))
	}
	if strings.Join(types, ",") != "reasoning,message,function_call,function_call" {
		t.Errorf("item order %v", types)
	}
	a, b := out[2].(map[string]any), out[3].(map[string]any)
	if a["call_id"] != "call_dup" || b["call_id"] == "call_dup" || a["arguments"] != `{"city": "Paris"}` || b["arguments"] != `{"city": "Oslo"}` {
		t.Errorf("calls %v / %v", a, b)
	}
	if rs := out[0].(map[string]any)["content"].([]any)[0].(map[string]any)["text"]; rs != "Two cities, two \"calls\".\n" {
		t.Errorf("reasoning text %q", rs)
	}
	wantUsage := map[string]any{"input_tokens": 400.0, "output_tokens": 60.0, "total_tokens": 460.0,
		"input_tokens_details": map[string]any{"cached_tokens": 256.0}, "output_tokens_details": map[string]any{"reasoning_tokens": 8.0}}
	if !reflect.DeepEqual(r.response["usage"], wantUsage) {
		t.Errorf("usage %v", r.response["usage"])
	}

	r = replayResponses(t, translateToResponses(t, read("length_mid_tool")))
	if r.terminal != "response.incomplete" || r.response["status"] != "incomplete" ||
		!reflect.DeepEqual(r.response["incomplete_details"], map[string]any{"reason": "max_output_tokens"}) {
		t.Errorf("length: %s %v", r.terminal, r.response)
	}
	r = replayResponses(t, translateToResponses(t, read("text_usage_cached")))
	if u := r.response["usage"].(map[string]any); u["output_tokens_details"] != nil {
		t.Errorf("reasoning_tokens zero-filled: %v", u)
	}
	r = replayResponses(t, translateToResponses(t, read("inband_error")))
	if r.terminal != "error" || r.counts["response.completed"] != 0 {
		t.Errorf("in-band error: terminal %s", r.terminal)
	}
	r = replayResponses(t, translateToResponses(t, read("resumed_call_after_next")))
	if r.terminal != "error" {
		t.Errorf("a call resumed after the next one started must break the stream, got %s", r.terminal)
	}
}

// replayed is a Responses stream as the openai SDK's accumulator leaves it.
type replayed struct {
	response map[string]any // the terminal event's response
	terminal string         // its type, or "error"
	counts   map[string]int
}

// replayResponses checks a Responses SSE stream the way the openai Node
// SDK's accumulator (src/internal/responses/response-accumulator.ts)
// does — response.created first, output_index appended in order, item_id
// equal to the item's id, unique item ids and call_ids, content parts
// present before their deltas, matching done items — plus the framing
// (event: T, compact data whose type is T, sequence_number 0, 1, 2, …),
// that every done event repeats exactly what the deltas built, that every
// item is done before the terminal event and nothing follows it, and that
// the terminal response's output equals the accumulated one.
func replayResponses(t *testing.T, stream []byte) replayed {
	t.Helper()
	r := replayed{counts: map[string]int{}}
	var snapshot map[string]any
	var output []map[string]any
	done := map[int]bool{}
	ids := map[string]bool{}
	rest := string(stream)
	for seq := 0; rest != ""; seq++ {
		frame, after, ok := strings.Cut(rest, "\n\n")
		if !ok {
			t.Fatalf("unterminated frame %q", rest)
		}
		rest = after
		name, data, ok := strings.Cut(frame, "\n")
		if !ok || !strings.HasPrefix(name, "event: ") || !strings.HasPrefix(data, "data: ") {
			t.Fatalf("bad frame %q", frame)
		}
		name, data = name[len("event: "):], data[len("data: "):]
		if got := string(compact(t, []byte(data))); got != data {
			t.Fatalf("JSON not compact: %s", data)
		}
		var ev map[string]any
		json.Unmarshal([]byte(data), &ev)
		if ev["type"] != name {
			t.Fatalf("event %q carries type %v", name, ev["type"])
		}
		if ev["sequence_number"] != float64(seq) {
			t.Fatalf("event %d (%s) has sequence_number %v", seq, name, ev["sequence_number"])
		}
		if r.terminal != "" {
			t.Fatalf("event %q after %s", name, r.terminal)
		}
		r.counts[name]++
		if snapshot == nil && name != "response.created" && name != "error" {
			t.Fatalf("first event %q, want response.created", name)
		}
		idx := -1
		if f, ok := ev["output_index"].(float64); ok {
			idx = int(f)
		}
		item := func() map[string]any {
			t.Helper()
			if idx < 0 || idx >= len(output) {
				t.Fatalf("%s: missing output at index %d", name, idx)
			}
			if id, ok := ev["item_id"]; ok && id != output[idx]["id"] {
				t.Fatalf("%s: item_id %v, output %d has id %v", name, id, idx, output[idx]["id"])
			}
			if done[idx] {
				t.Fatalf("%s: output %d is already done", name, idx)
			}
			return output[idx]
		}
		part := func(kind string) map[string]any {
			t.Helper()
			it := item()
			content, _ := it["content"].([]any)
			if ev["content_index"] != 0.0 || len(content) != 1 {
				t.Fatalf("%s: missing content %v in %v", name, ev["content_index"], it)
			}
			p := content[0].(map[string]any)
			if p["type"] != kind {
				t.Fatalf("%s: content is %v, want %s", name, p["type"], kind)
			}
			return p
		}
		switch name {
		case "response.created", "response.in_progress":
			resp := ev["response"].(map[string]any)
			if resp["status"] != "in_progress" || len(resp["output"].([]any)) != 0 || resp["usage"] != nil {
				t.Fatalf("%s: %v", name, resp)
			}
			snapshot = resp
		case "response.output_item.added":
			it := ev["item"].(map[string]any)
			if idx != len(output) {
				t.Fatalf("output_item.added at %d with %d items", idx, len(output))
			}
			id, _ := it["id"].(string)
			keys := []string{"id:" + id}
			if it["type"] == "function_call" {
				callID, _ := it["call_id"].(string)
				if callID == "" || it["arguments"] != "" || it["name"] == "" {
					t.Fatalf("function_call item %v", it)
				}
				keys = append(keys, "call:"+callID)
			}
			if it["type"] == "custom_tool_call" {
				callID, _ := it["call_id"].(string)
				if callID == "" || it["input"] != "" || it["name"] == "" {
					t.Fatalf("custom_tool_call item %v", it)
				}
				keys = append(keys, "call:"+callID)
			}
			for _, k := range keys {
				if k == "id:" || ids[k] {
					t.Fatalf("missing or duplicate identity %q", k)
				}
				ids[k] = true
			}
			if it["status"] != "in_progress" {
				t.Fatalf("added item status %v", it["status"])
			}
			output = append(output, it)
		case "response.content_part.added":
			it, p := item(), ev["part"].(map[string]any)
			want := map[string]string{"message": "output_text", "reasoning": "reasoning_text"}[it["type"].(string)]
			if p["type"] != want || p["text"] != "" || len(it["content"].([]any)) != 0 || ev["content_index"] != 0.0 {
				t.Fatalf("content_part.added %v to %v", p, it)
			}
			it["content"] = []any{p}
		case "response.output_text.delta", "response.reasoning_text.delta":
			kind := strings.TrimSuffix(strings.TrimPrefix(name, "response."), ".delta")
			p := part(kind)
			if _, ok := ev["logprobs"].([]any); kind == "output_text" && !ok {
				t.Fatalf("%s without logprobs", name)
			}
			p["text"] = p["text"].(string) + ev["delta"].(string)
		case "response.output_text.done", "response.reasoning_text.done":
			if p := part(strings.TrimSuffix(strings.TrimPrefix(name, "response."), ".done")); p["text"] != ev["text"] {
				t.Fatalf("%s text %q, deltas built %q", name, ev["text"], p["text"])
			}
		case "response.content_part.done":
			p := ev["part"].(map[string]any)
			if got := part(p["type"].(string)); !reflect.DeepEqual(got, p) {
				t.Fatalf("content_part.done %v, built %v", p, got)
			}
		case "response.function_call_arguments.delta":
			it := item()
			if it["type"] != "function_call" {
				t.Fatalf("arguments delta to %v", it["type"])
			}
			it["arguments"] = it["arguments"].(string) + ev["delta"].(string)
		case "response.function_call_arguments.done":
			if it := item(); it["arguments"] != ev["arguments"] || it["name"] != ev["name"] {
				t.Fatalf("arguments.done %v, built %v", ev, it)
			}
		case "response.custom_tool_call_input.delta":
			it := item()
			if it["type"] != "custom_tool_call" {
				t.Fatalf("custom input delta to %v", it["type"])
			}
			it["input"] = it["input"].(string) + ev["delta"].(string)
		case "response.custom_tool_call_input.done":
			if it := item(); it["input"] != ev["input"] {
				t.Fatalf("custom_tool_call_input.done %v, built %v", ev, it)
			}
		case "response.output_item.done":
			it, got := item(), ev["item"].(map[string]any)
			if got["status"] == "in_progress" {
				t.Fatalf("done item still in progress: %v", got)
			}
			built := map[string]any{}
			for k, v := range it {
				built[k] = v
			}
			built["status"] = got["status"]
			if !reflect.DeepEqual(built, got) {
				t.Fatalf("output_item.done %v, built %v", got, built)
			}
			output[idx] = got
			done[idx] = true
		case "response.completed", "response.incomplete":
			r.terminal, r.response = name, ev["response"].(map[string]any)
			if len(done) != len(output) {
				t.Fatalf("%s with items not done", name)
			}
			final, _ := json.Marshal(output)
			var want []any
			json.Unmarshal(final, &want)
			if !reflect.DeepEqual(r.response["output"], want) {
				t.Fatalf("%s output %v, accumulated %v", name, r.response["output"], want)
			}
			if r.response["id"] != snapshot["id"] || r.response["model"] != snapshot["model"] {
				t.Fatalf("%s is another response: %v", name, r.response)
			}
			wantStatus := strings.TrimPrefix(name, "response.")
			if r.response["status"] != wantStatus {
				t.Fatalf("%s with status %v", name, r.response["status"])
			}
			checkResponseObject(t, []byte(data[strings.Index(data, `"response":`)+len(`"response":`):len(data)-1]))
		case "error":
			r.terminal = "error"
			e, _ := ev["error"].(map[string]any)
			if e["type"] != "upstream_error" || e["message"] != "stream interrupted" {
				t.Fatalf("error frame %s", data)
			}
		default:
			t.Fatalf("unknown event %q", name)
		}
	}
	if r.terminal == "" {
		t.Fatalf("stream ended without a terminal event")
	}
	return r
}

// checkResponseObject checks a finished response object: the caller's
// model, a terminal status, usage with consistent totals, items with ids.
func checkResponseObject(t *testing.T, b []byte) {
	t.Helper()
	var r struct {
		Object, Status, Model string
		Output                []map[string]any
		Usage                 *struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
			TotalTokens  int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response object: %v\n%s", err, b)
	}
	if r.Object != "response" || r.Model != "gpt-alias" || (r.Status != "completed" && r.Status != "incomplete") || len(r.Output) == 0 {
		t.Fatalf("response object %s", b)
	}
	if r.Usage == nil || r.Usage.TotalTokens != r.Usage.InputTokens+r.Usage.OutputTokens {
		t.Fatalf("usage %s", b)
	}
	for _, it := range r.Output {
		if id, _ := it["id"].(string); id == "" {
			t.Fatalf("item without id: %v", it)
		}
	}
}

// TestResponsesRequestRejections: every refusal of ResponsesToOpenAI, with the
// offending fields named and sorted; malformed values are invalid
// requests, not unsupported features.
func TestResponsesRequestRejections(t *testing.T) {
	const in = `"input":"hi"`
	for _, tc := range []struct {
		name, body  string
		unsupported []string // want *UnsupportedError with these fields
		invalid     string   // want *RequestError containing this
	}{
		{name: "unknown fields sorted", body: `{"model":"m",` + in + `,"user":"u","previous_response_id":"resp_1","metadata":{}}`, unsupported: []string{"metadata", "previous_response_id", "user"}},
		{name: "store true", body: `{"model":"m",` + in + `,"store":true}`, unsupported: []string{"store (only false)"}},
		{name: "include other", body: `{"model":"m",` + in + `,"include":["reasoning.encrypted_content","file_search_call.results"]}`, unsupported: []string{`include[1] (only "reasoning.encrypted_content")`}},
		{name: "reasoning effort", body: `{"model":"m",` + in + `,"reasoning":{"effort":"max"}}`, unsupported: []string{"reasoning.effort (minimal, low, medium, high or xhigh)"}},
		{name: "reasoning other key", body: `{"model":"m",` + in + `,"reasoning":{"effort":"low","generate_summary":"auto"}}`, unsupported: []string{"reasoning.generate_summary"}},
		{name: "parallel tool calls not a boolean", body: `{"model":"m",` + in + `,"parallel_tool_calls":"yes"}`, invalid: "parallel_tool_calls must be a boolean"},
		{name: "truncation auto", body: `{"model":"m",` + in + `,"truncation":"auto"}`, unsupported: []string{`truncation (only "disabled")`}},
		{name: "unknown tool type", body: `{"model":"m",` + in + `,"tools":[{"type":"function","name":"f"},{"type":"frobnicate"}]}`, unsupported: []string{"tools[1].type (function, namespace, custom or a hosted tool)"}},
		{name: "namespace member not a function", body: `{"model":"m",` + in + `,"tools":[{"type":"namespace","name":"other","tools":[{"type":"web_search"}]}]}`, unsupported: []string{"tools[0].tools[0].type (only function inside a namespace)"}},
		{name: "tool_choice allowed_tools", body: `{"model":"m",` + in + `,"tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[]}}`, unsupported: []string{"tool_choice (auto, none, required or {type: function, name})"}},
		{name: "tool_choice extra key", body: `{"model":"m",` + in + `,"tool_choice":{"type":"function","name":"f","x":1}}`, unsupported: []string{"tool_choice (auto, none, required or {type: function, name})"}},
		{name: "image input", body: `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"see"},{"type":"input_image","image_url":"data:image/png;base64,AA"}]}]}`, unsupported: []string{"input[0].content[1].type (text parts only; images and files are not supported)"}},
		{name: "image in tool output", body: `{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_image","image_url":"x"}]}]}`, unsupported: []string{"input[0].output[0].type (text parts only; images and files are not supported)"}},
		{name: "unknown item type", body: `{"model":"m","input":[{"type":"web_search_call","id":"ws"}]}`, unsupported: []string{"input[0].type (message, function_call, function_call_output, custom_tool_call, custom_tool_call_output or reasoning)"}},
		{name: "text verbosity and format", body: `{"model":"m",` + in + `,"text":{"verbosity":"low","format":{"type":"text"}}}`, unsupported: []string{"text.format.type (only json_schema)", "text.verbosity"}},
		{name: "unknown field and unsupported value together", body: `{"model":"m",` + in + `,"user":"u","store":true}`, unsupported: []string{"store (only false)", "user"}},
		{name: "unsupported wins over malformed", body: `{"model":5,` + in + `,"user":"u"}`, unsupported: []string{"user"}},
		{name: "several at once, sorted", body: `{"model":"m",` + in + `,"store":true,"background":true,"truncation":"auto"}`, unsupported: []string{"background", "store (only false)", `truncation (only "disabled")`}},

		{name: "not an object", body: `[1]`, invalid: "JSON object"},
		{name: "model missing", body: `{` + in + `}`, invalid: "model must be a non-empty string"},
		{name: "model empty", body: `{"model":"",` + in + `}`, invalid: "model must be a non-empty string"},
		{name: "model number", body: `{"model":5,` + in + `}`, invalid: "model must be a non-empty string"},
		{name: "input missing", body: `{"model":"m"}`, invalid: "input is required"},
		{name: "input number", body: `{"model":"m","input":3}`, invalid: "input must be a string or an array"},
		{name: "stream string", body: `{"model":"m",` + in + `,"stream":"true"}`, invalid: "stream must be a boolean"},
		{name: "bad role", body: `{"model":"m","input":[{"role":"tool","content":"x"}]}`, invalid: "input[0].role"},
		{name: "call without call_id", body: `{"model":"m","input":[{"type":"function_call","name":"f","arguments":"{}"}]}`, invalid: "input[0].call_id"},
		{name: "call without name", body: `{"model":"m","input":[{"type":"function_call","call_id":"c"}]}`, invalid: "input[0].name"},
		{name: "output without output", body: `{"model":"m","input":[{"type":"function_call_output","call_id":"c"}]}`, invalid: "input[0].output is required"},
		{name: "tool without name", body: `{"model":"m",` + in + `,"tools":[{"type":"function"}]}`, invalid: "tools[0].name"},
		{name: "tool parameters string", body: `{"model":"m",` + in + `,"tools":[{"type":"function","name":"f","parameters":"x"}]}`, invalid: "tools[0].parameters must be an object"},
		{name: "max_output_tokens zero", body: `{"model":"m",` + in + `,"max_output_tokens":0}`, invalid: "max_output_tokens must be a positive integer"},
		{name: "temperature string", body: `{"model":"m",` + in + `,"temperature":"hot"}`, invalid: "temperature must be a number"},
		{name: "json_schema without schema", body: `{"model":"m",` + in + `,"text":{"format":{"type":"json_schema","name":"x"}}}`, invalid: "text.format.schema is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := dialect.ResponsesToOpenAI([]byte(tc.body))
			var ue *dialect.UnsupportedError
			var re *dialect.RequestError
			switch {
			case tc.unsupported != nil:
				if !errors.As(err, &ue) || !reflect.DeepEqual(ue.Fields, tc.unsupported) {
					t.Fatalf("err = %v, want unsupported %q", err, tc.unsupported)
				}
				if !strings.HasPrefix(ue.Error(), "unsupported Responses feature(s): ") {
					t.Errorf("message %q", ue.Error())
				}
			default:
				if !errors.As(err, &re) || !strings.Contains(re.Message, tc.invalid) {
					t.Fatalf("err = %v, want a request error containing %q", err, tc.invalid)
				}
			}
		})
	}
}

// TestResponsesRequestAccepts: the no-op spellings clients send (Codex's
// "reasoning": null and "include": [], explicit defaults) are accepted.
func TestResponsesRequestAccepts(t *testing.T) {
	for _, body := range []string{
		`{"model":"m","input":"hi","reasoning":null,"include":[],"text":null,"tools":[],"store":null}`,
		`{"model":"m","input":"hi","store":false,"truncation":"disabled","parallel_tool_calls":false,"stream":false}`,
		// Codex sends prompt_cache_key on every request (dropped: the
		// serves cache prefixes by themselves).
		`{"model":"m","input":"hi","prompt_cache_key":"019a-session","parallel_tool_calls":true}`,
		`{"model":"m","input":[{"type":"message","role":"user","content":"x"}],"reasoning":{"effort":"minimal","summary":"detailed"}}`,
		`{"model":"m","input":[],"instructions":null,"max_output_tokens":null,"temperature":null}`,
	} {
		out, info, err := dialect.ResponsesToOpenAI([]byte(body))
		var chat struct{ Messages []any }
		if err != nil || json.Unmarshal(out, &chat) != nil || chat.Messages == nil || info.Model != "m" {
			t.Errorf("%s: %v %s", body, err, out)
		}
	}
}

// TestResponsesStreamChunkAllocs: the stream translator runs once per token
// of every Responses stream; per chunk it allocates nothing but the
// amortized growth of the item's accumulated text.
func TestResponsesStreamChunkAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, tc := range []struct{ name, setup, hot string }{
		{"text", chunk(`{"content":"Hi"}`), vllmText},
		{"reasoning", chunk(`{"reasoning":"Hm"}`), chunk(`{"reasoning":" so the"}`)},
		{"tool_args", chunk(`{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}`),
			chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"city\": \"Pa"}}]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := dialect.NewResponsesStream(dialect.RequestInfo{Model: "gpt-alias"})
			tr.Start()
			if _, err := tr.Chunk([]byte(tc.setup)); err != nil {
				t.Fatal(err)
			}
			data := []byte(tc.hot)
			if n := testing.AllocsPerRun(2000, func() { tr.Chunk(data) }); n > 0.1 {
				t.Errorf("%.2f allocations per chunk", n)
			}
		})
	}
}

// TestResponsesParallelToolCalls: the caller's parallel_tool_calls reaches
// the serve, either way, when there are tools to call.
func TestResponsesParallelToolCalls(t *testing.T) {
	const tools = `,"tools":[{"type":"function","name":"f","parameters":{"type":"object"}}]`
	for _, tc := range []struct {
		name, body string
		want       any // nil: absent
	}{
		{"true with tools", `{"model":"m","input":"hi","parallel_tool_calls":true` + tools + `}`, true},
		{"false with tools", `{"model":"m","input":"hi","parallel_tool_calls":false` + tools + `}`, false},
		{"true without tools", `{"model":"m","input":"hi","parallel_tool_calls":true}`, nil},
		{"unset", `{"model":"m","input":"hi"` + tools + `}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := dialect.ResponsesToOpenAI([]byte(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var chat map[string]any
			if err := json.Unmarshal(out, &chat); err != nil {
				t.Fatal(err)
			}
			if got := chat["parallel_tool_calls"]; got != tc.want {
				t.Fatalf("parallel_tool_calls = %v, want %v in %s", got, tc.want, out)
			}
		})
	}
}
