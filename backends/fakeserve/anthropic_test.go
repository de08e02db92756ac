package fakeserve_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// aEvent is one Anthropic SSE event.
type aEvent struct {
	name string
	data map[string]any
	raw  string
}

// messagesCall posts to /v1/messages with the Anthropic headers (hdr
// overrides them) and reads the answer: events for a stream, else the body.
func messagesCall(t *testing.T, c *http.Client, base, body string, hdr map[string]string) (status int, events []aEvent, plain []byte, readErr error) {
	t.Helper()
	h := map[string]string{"Anthropic-Version": "2023-06-01", "X-Api-Key": "k"}
	for k, v := range hdr {
		h[k] = v
	}
	resp, err := send(t.Context(), c, http.MethodPost, base+"/v1/messages", body, h)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		plain, readErr = io.ReadAll(resp.Body)
		return resp.StatusCode, nil, plain, readErr
	}
	br := bufio.NewReader(resp.Body)
	var ev aEvent
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if err != io.EOF || line != "" || ev.name != "" {
				readErr = io.ErrUnexpectedEOF
				if err != io.EOF {
					readErr = err
				}
			}
			return resp.StatusCode, events, nil, readErr
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			events = append(events, ev)
			ev = aEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.raw = strings.TrimPrefix(line, "data: ")
			json.Unmarshal([]byte(ev.raw), &ev.data) // malformed frames stay nil
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

func eventNames(events []aEvent) string {
	var names []string
	for _, e := range events {
		names = append(names, e.name)
	}
	return strings.Join(names, " ")
}

// deltaText joins the text of one kind of delta ("text", "thinking",
// "partial_json") and counts the events carrying it.
func deltaText(events []aEvent, key string) (string, int) {
	var b strings.Builder
	n := 0
	for _, e := range events {
		if d, ok := e.data["delta"].(map[string]any); ok && e.name == "content_block_delta" {
			if s, ok := d[key].(string); ok {
				b.WriteString(s)
				n++
			}
		}
	}
	return b.String(), n
}

func TestMessagesStream(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{APIKey: "k"})
	const tools = `"tools":[{"name":"get_weather","input_schema":{"type":"object"}},{"name":"get_time","input_schema":{"type":"object"}}]`
	for _, tc := range []struct {
		name, body, names, stop string
		check                   func(t *testing.T, events []aEvent)
	}{
		{"text", `{"model":"fake-model","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			"message_start ping content_block_start" + strings.Repeat(" content_block_delta", 6) + " content_block_stop message_delta message_stop", "end_turn",
			func(t *testing.T, events []aEvent) {
				if text, _ := deltaText(events, "text"); text != strings.Join(fakeserve.DefaultDeltas(), "") {
					t.Errorf("text %q", text)
				}
			}},
		{"thinking and parallel tools", `{"model":"fake-model","max_tokens":100,"stream":true,"thinking":{"type":"enabled","budget_tokens":1024},` + tools + `,"messages":[{"role":"user","content":"hi"}]}`,
			"message_start ping content_block_start content_block_delta content_block_delta content_block_delta content_block_stop" +
				strings.Repeat(" content_block_start content_block_delta content_block_delta content_block_delta content_block_stop", 2) + " message_delta message_stop", "tool_use",
			func(t *testing.T, events []aEvent) {
				if th, n := deltaText(events, "thinking"); th != "Let me think about this." || n != 2 {
					t.Errorf("thinking %q in %d deltas", th, n)
				}
				if sig, _ := deltaText(events, "signature"); sig == "" {
					t.Errorf("no signature_delta")
				}
				if args, n := deltaText(events, "partial_json"); args != `{"city":"Paris"}{"city":"Paris"}` || n != 6 {
					t.Errorf("tool input %q in %d deltas", args, n)
				}
			}},
		{"stop sequence", `{"model":"fake-model","max_tokens":100,"stream":true,"stop_sequences":["ake"],"messages":[{"role":"user","content":"hi"}]}`,
			"message_start ping content_block_start content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop", "stop_sequence",
			func(t *testing.T, events []aEvent) {
				if text, _ := deltaText(events, "text"); text != "Hello from the f" {
					t.Errorf("text %q", text)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, events, plain, err := messagesCall(t, c, base, tc.body, nil)
			if status != 200 || err != nil || plain != nil {
				t.Fatalf("status %d, err %v, body %s", status, err, plain)
			}
			if got := eventNames(events); got != tc.names {
				t.Errorf("events\n got %s\nwant %s", got, tc.names)
			}
			start := events[0].data["message"].(map[string]any)["usage"].(map[string]any)
			prompt := max(1, len(tc.body)/4)
			if start["cache_read_input_tokens"] != float64(prompt/2) || start["input_tokens"] != float64(prompt-prompt/2) {
				t.Errorf("message_start usage %v, want %d tokens half cached", start, prompt)
			}
			md := events[len(events)-2].data
			if md["delta"].(map[string]any)["stop_reason"] != tc.stop || md["usage"].(map[string]any)["output_tokens"] == nil {
				t.Errorf("message_delta %s", events[len(events)-2].raw)
			}
			tc.check(t, events)
		})
	}
	if h := s.LastRequest().Header; h.Get("X-Api-Key") != "k" || h.Get("Anthropic-Version") != "2023-06-01" || s.LastRequest().Path != "/v1/messages" {
		t.Errorf("recorded request %v %s", h, s.LastRequest().Path)
	}
}

func TestMessagesNonStream(t *testing.T) {
	_, base, c := serve(t, fakeserve.Options{APIKey: "k"})
	for _, tc := range []struct {
		name, body string
		hdr        map[string]string
		status     int
		want       string // part of the answer
	}{
		{"text", `{"model":"fake-model","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`, nil, 200, `"text":"Hello from the fake serve."`},
		{"max_tokens", `{"model":"fake-model","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`, nil, 200, `"stop_reason":"max_tokens"`},
		{"named tool", `{"model":"fake-model","max_tokens":100,"tools":[{"name":"a"},{"name":"b"}],"tool_choice":{"type":"tool","name":"b"},"messages":[{"role":"user","content":"hi"}]}`, nil, 200, `"input":{"city":"Paris"},"name":"b"`},
		{"tool_choice none", `{"model":"fake-model","max_tokens":100,"tools":[{"name":"a"}],"tool_choice":{"type":"none"},"messages":[{"role":"user","content":"hi"}]}`, nil, 200, `"stop_reason":"end_turn"`},
		{"tool result quoted", `{"model":"fake-model","max_tokens":100,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"18C"}]}]}]}`, nil, 200, `"text":"The tool said: 18C"`},
		{"no anthropic-version", `{"model":"fake-model","max_tokens":5,"messages":[]}`, map[string]string{"Anthropic-Version": ""}, 400, `"invalid_request_error"`},
		{"wrong key", `{"model":"fake-model","max_tokens":5,"messages":[]}`, map[string]string{"X-Api-Key": "nope"}, 401, `"authentication_error"`},
		{"no max_tokens", `{"model":"fake-model","messages":[]}`, nil, 400, `max_tokens`},
		{"other model", `{"model":"other","max_tokens":5,"messages":[]}`, nil, 404, `"not_found_error"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body, err := messagesCall(t, c, base, tc.body, tc.hdr)
			if status != tc.status || err != nil || !strings.Contains(string(body), tc.want) {
				t.Errorf("status %d (want %d), err %v: %s\nwant it to contain %s", status, tc.status, err, body, tc.want)
			}
		})
	}
}

func TestMessagesFailureModes(t *testing.T) {
	s, base, c := serve(t, fakeserve.Options{APIKey: "k"})
	const stream = `{"model":"fake-model","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	const plain = `{"model":"fake-model","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		mode   fakeserve.Mode
		body   string
		status int
		check  func(t *testing.T, events []aEvent, body []byte, err error)
	}{
		{fakeserve.ModeInbandError, stream, 200, func(t *testing.T, events []aEvent, _ []byte, _ error) {
			if eventNames(events) != "error" || !strings.Contains(events[0].raw, `"overloaded_error"`) {
				t.Errorf("events %v", events)
			}
		}},
		{fakeserve.ModeInbandError, plain, 529, nil},
		{fakeserve.ModeStatus503, stream, 503, nil},
		{fakeserve.ModeStatus400, plain, 400, nil},
		{fakeserve.ModeStatus500, plain, 500, nil},
		{fakeserve.ModeCut, stream, 200, func(t *testing.T, events []aEvent, _ []byte, err error) {
			if _, n := deltaText(events, "text"); n != fakeserve.DefaultCutAfter || err == nil {
				t.Errorf("%d deltas before the cut, read error %v", n, err)
			}
		}},
		{fakeserve.ModeCut, plain, 200, func(t *testing.T, _ []aEvent, body []byte, err error) {
			if err == nil || json.Valid(body) {
				t.Errorf("non-streaming cut read cleanly: %s", body)
			}
		}},
		{fakeserve.ModeMidstreamError, stream, 200, func(t *testing.T, events []aEvent, _ []byte, err error) {
			last := events[len(events)-1]
			if _, n := deltaText(events, "text"); n != fakeserve.DefaultCutAfter || last.name != "error" || !strings.Contains(last.raw, `"api_error"`) || err != nil {
				t.Errorf("events %s, err %v", eventNames(events), err)
			}
		}},
		{fakeserve.ModeMalformed, stream, 200, func(t *testing.T, events []aEvent, _ []byte, _ error) {
			bad := 0
			for _, e := range events {
				if e.data == nil {
					bad++
				}
			}
			if bad != 1 || events[len(events)-1].name != "message_stop" {
				t.Errorf("%d malformed events in %s", bad, eventNames(events))
			}
		}},
		{fakeserve.ModeNoDone, stream, 200, func(t *testing.T, events []aEvent, _ []byte, err error) {
			if events[len(events)-1].name != "message_delta" || err != nil {
				t.Errorf("events %s, err %v", eventNames(events), err)
			}
		}},
	} {
		t.Run(string(tc.mode)+map[bool]string{true: "/stream", false: "/non-stream"}[tc.body == stream], func(t *testing.T) {
			s.SetMode(tc.mode)
			defer s.SetMode(fakeserve.ModeOK)
			status, events, body, err := messagesCall(t, c, base, tc.body, nil)
			if status != tc.status {
				t.Fatalf("status %d, want %d", status, tc.status)
			}
			if tc.check != nil {
				tc.check(t, events, body, err)
			} else if !strings.Contains(string(body), `"type":"error"`) {
				t.Errorf("error body %s", body)
			}
		})
	}
}
