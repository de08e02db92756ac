package dialect_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ from the current output")

// generated matches the ids and timestamps the package makes up; goldens
// hold placeholders instead. Ids in test inputs never have 24 hex digits,
// so ids passed through from a serve are still compared.
var (
	generatedID = regexp.MustCompile(`\b(msg_|toolu_|call_|chatcmpl-)[0-9a-f]{24}\b`)
	createdAt   = regexp.MustCompile(`"created":[0-9]+`)
)

func normalize(b []byte) []byte {
	b = generatedID.ReplaceAll(b, []byte("${1}GENERATED"))
	return createdAt.ReplaceAll(b, []byte(`"created":0`))
}

// goldenCases returns the case names in testdata/dir (files NAME.in.EXT).
func goldenCases(t *testing.T, dir, ext string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.in."+ext))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden cases in testdata/%s (%v)", dir, err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".in."+ext))
	}
	return names
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkJSONGolden compares got with the golden file semantically (key order
// and whitespace do not matter; numbers compare by their text).
func checkJSONGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = normalize(got)
	if *update {
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, got, "", "  "); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, got)
		}
		pretty.WriteByte('\n')
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readFile(t, path)
	if !jsonEqual(t, got, want) {
		t.Errorf("%s: mismatch\n got: %s\nwant: %s", path, got, compact(t, want))
	}
}

// checkTextGolden compares got with the golden file byte for byte (SSE
// framing is part of the contract).
func checkTextGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = normalize(got)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := readFile(t, path)
	if !bytes.Equal(got, want) {
		t.Errorf("%s: mismatch\n--- got ---\n%s\n--- want ---\n%s", path, got, want)
	}
}

func decodeJSON(t *testing.T, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	return reflect.DeepEqual(decodeJSON(t, a), decodeJSON(t, b))
}

func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return out.Bytes()
}

// sseEvent is one parsed SSE event.
type sseEvent struct {
	name string
	data string
}

// parseSSE splits a stream into events; ": key=value" comment lines are
// returned as test parameters.
func parseSSE(t *testing.T, b []byte) ([]sseEvent, map[string]string) {
	t.Helper()
	params := map[string]string{}
	var events []sseEvent
	for _, block := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		var ev sseEvent
		var data []string
		for _, line := range strings.Split(block, "\n") {
			switch {
			case strings.HasPrefix(line, ":"):
				k, v, _ := strings.Cut(strings.TrimSpace(line[1:]), "=")
				params[k] = v
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(line[len("event:"):])
			case strings.HasPrefix(line, "data:"):
				data = append(data, strings.TrimPrefix(line[len("data:"):], " "))
			}
		}
		if data != nil {
			ev.data = strings.Join(data, "\n")
			events = append(events, ev)
		}
	}
	return events, params
}

func intParam(t *testing.T, params map[string]string, key string, def int) int {
	t.Helper()
	v, ok := params[key]
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("param %s=%q: %v", key, v, err)
	}
	return n
}

// anthropicMessage is a reply as an Anthropic SDK sees it after
// accumulating a stream.
type anthropicMessage struct {
	Content []map[string]any
	Stop    any
	StopSeq any
	Usage   map[string]any
	Errored bool
}

// replayAnthropic checks an Anthropic SSE stream against the protocol —
// exact "event: T\ndata: {compact JSON}\n\n" framing with T equal to the
// data's type, message_start first, block indexes consecutive from 0, every
// delta to the open block, every block stopped, message_delta then
// message_stop last — and accumulates the message the way the SDKs do
// (partial_json concatenated and parsed at the block's end).
func replayAnthropic(t *testing.T, stream []byte) anthropicMessage {
	t.Helper()
	var msg anthropicMessage
	rest := string(stream)
	open := -1
	var partial string
	state := "start"
	for rest != "" {
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
		if state == "stopped" {
			t.Fatalf("event %q after message_stop", name)
		}
		index := -1
		if f, ok := ev["index"].(float64); ok {
			index = int(f)
		}
		switch name {
		case "message_start":
			if state != "start" {
				t.Fatalf("message_start twice")
			}
			state = "started"
			m := ev["message"].(map[string]any)
			msg.Usage = m["usage"].(map[string]any)
		case "ping":
		case "error":
			msg.Errored = true
			state = "stopped"
			if rest != "" {
				t.Fatalf("events after error: %q", rest)
			}
		case "content_block_start":
			if open >= 0 || index != len(msg.Content) {
				t.Fatalf("block %d starts with block %d open and %d blocks done", index, open, len(msg.Content))
			}
			open = index
			msg.Content = append(msg.Content, ev["content_block"].(map[string]any))
			partial = ""
		case "content_block_delta":
			if index != open {
				t.Fatalf("delta to block %d while %d is open", index, open)
			}
			b, d := msg.Content[index], ev["delta"].(map[string]any)
			switch d["type"] {
			case "text_delta":
				b["text"] = b["text"].(string) + d["text"].(string)
			case "thinking_delta":
				b["thinking"] = b["thinking"].(string) + d["thinking"].(string)
			case "input_json_delta":
				partial += d["partial_json"].(string)
			default:
				t.Fatalf("unknown delta %v", d["type"])
			}
		case "content_block_stop":
			if index != open {
				t.Fatalf("stop for block %d while %d is open", index, open)
			}
			if b := msg.Content[index]; b["type"] == "tool_use" && partial != "" {
				var input map[string]any
				if err := json.Unmarshal([]byte(partial), &input); err != nil {
					b["input"] = "UNPARSABLE:" + partial
				} else {
					b["input"] = input
				}
			}
			open = -1
		case "message_delta":
			if open >= 0 {
				t.Fatalf("message_delta with block %d open", open)
			}
			d := ev["delta"].(map[string]any)
			msg.Stop, msg.StopSeq = d["stop_reason"], d["stop_sequence"]
			for k, v := range ev["usage"].(map[string]any) {
				msg.Usage[k] = v
			}
			state = "delta"
		case "message_stop":
			if state != "delta" {
				t.Fatalf("message_stop without message_delta")
			}
			state = "stopped"
		default:
			t.Fatalf("unknown event %q", name)
		}
	}
	if state != "stopped" {
		t.Fatalf("stream ended in state %s", state)
	}
	return msg
}

// openaiReply is a reply as an OpenAI SDK sees it after accumulating a
// stream.
type openaiReply struct {
	Role      string
	Content   string
	Reasoning string
	Calls     []map[string]string // id, name, arguments
	Finish    string
	Usage     map[string]any
	Done      bool
	Errored   bool
}

// replayOpenAI checks an OpenAI chunk stream (data: frames, compact JSON,
// one choice, [DONE] last unless an error frame ended it) and accumulates
// it, merging tool_calls by index.
func replayOpenAI(t *testing.T, stream []byte) openaiReply {
	t.Helper()
	var r openaiReply
	for _, frame := range strings.SplitAfter(string(stream), "\n\n") {
		if frame == "" {
			continue
		}
		if r.Done || r.Errored {
			t.Fatalf("frame after the end: %q", frame)
		}
		data, ok := strings.CutPrefix(strings.TrimSuffix(frame, "\n\n"), "data: ")
		if !ok {
			t.Fatalf("bad frame %q", frame)
		}
		if data == "[DONE]" {
			r.Done = true
			continue
		}
		if string(compact(t, []byte(data))) != data {
			t.Fatalf("JSON not compact: %s", data)
		}
		var c struct {
			Object  string
			Choices []struct {
				Delta struct {
					Role             string
					Content          *string
					ReasoningContent string `json:"reasoning_content"`
					ToolCalls        []struct {
						Index    int
						ID       string
						Function struct{ Name, Arguments string }
					} `json:"tool_calls"`
				}
				FinishReason *string `json:"finish_reason"`
			}
			Usage map[string]any
			Error map[string]any
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("chunk %s: %v", data, err)
		}
		if c.Error != nil {
			r.Errored = true
			continue
		}
		if c.Object != "chat.completion.chunk" {
			t.Fatalf("object %q", c.Object)
		}
		if c.Usage != nil {
			r.Usage = c.Usage
		}
		for _, ch := range c.Choices {
			d := ch.Delta
			if d.Role != "" {
				r.Role = d.Role
			}
			if d.Content != nil {
				r.Content += *d.Content
			}
			r.Reasoning += d.ReasoningContent
			for _, tc := range d.ToolCalls {
				for len(r.Calls) <= tc.Index {
					r.Calls = append(r.Calls, map[string]string{})
				}
				call := r.Calls[tc.Index]
				if tc.ID != "" {
					call["id"] = tc.ID
				}
				if tc.Function.Name != "" {
					call["name"] = tc.Function.Name
				}
				call["arguments"] += tc.Function.Arguments
			}
			if ch.FinishReason != nil {
				r.Finish = *ch.FinishReason
			}
		}
	}
	return r
}

// mustJSON encodes v without HTML escaping, so goldens read as sent.
func mustJSON(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprint(err))
	}
	return b.String()
}
