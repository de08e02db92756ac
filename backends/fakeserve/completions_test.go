package fakeserve_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// textReply is a text_completion object, whole or one stream chunk.
type textReply struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index        int             `json:"index"`
		Text         string          `json:"text"`
		Logprobs     json.RawMessage `json:"logprobs"`
		FinishReason *string         `json:"finish_reason"`
		StopReason   *string         `json:"stop_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// textResult is a completion accumulated per choice index.
type textResult struct {
	texts, finish, stop map[int]string
	logprobs            bool
	done, errored       bool
}

func accumulate(t *testing.T, payloads []string) textResult {
	t.Helper()
	r := textResult{texts: map[int]string{}, finish: map[int]string{}, stop: map[int]string{}}
	for _, p := range payloads {
		if p == "[DONE]" {
			r.done = true
			continue
		}
		var c textReply
		if err := json.Unmarshal([]byte(p), &c); err != nil {
			t.Fatalf("payload %q: %v", p, err)
		}
		if c.Error != nil {
			r.errored = true
			continue
		}
		if c.Object != "text_completion" || !strings.HasPrefix(c.ID, "cmpl-") || c.Model != "m" {
			t.Errorf("object %q id %q model %q", c.Object, c.ID, c.Model)
		}
		for _, ch := range c.Choices {
			r.texts[ch.Index] += ch.Text
			if ch.FinishReason != nil {
				r.finish[ch.Index] = *ch.FinishReason
			}
			if ch.StopReason != nil {
				r.stop[ch.Index] = *ch.StopReason
			}
			if string(ch.Logprobs) != "null" && len(ch.Logprobs) > 0 {
				r.logprobs = true
			}
		}
	}
	return r
}

func TestCompletions(t *testing.T) {
	text := strings.Join(fakeserve.DefaultDeltas(), "")
	fim := strings.Join(fakeserve.FIMDeltas("def add(a, b):\n    ", "\n\nprint(add(1, 2))"), "")
	tests := []struct {
		name       string
		body       string
		wantTexts  map[int]string
		wantFinish map[int]string
		wantStop   string
		logprobs   bool
	}{
		{name: "string prompt", body: `{"prompt":"Say hi"}`, wantTexts: map[int]string{0: text}, wantFinish: map[int]string{0: "stop"}},
		{name: "fill in the middle", body: `{"prompt":"def add(a, b):\n    ","suffix":"\n\nprint(add(1, 2))"}`, wantTexts: map[int]string{0: fim}, wantFinish: map[int]string{0: "stop"}},
		{name: "echo", body: `{"prompt":"Say: ","echo":true}`, wantTexts: map[int]string{0: "Say: " + text}, wantFinish: map[int]string{0: "stop"}},
		{name: "max_tokens", body: `{"prompt":"x","max_tokens":2}`, wantTexts: map[int]string{0: "Hello from"}, wantFinish: map[int]string{0: "length"}},
		{name: "stop string", body: `{"prompt":"x","stop":[" fake","zzz"]}`, wantTexts: map[int]string{0: "Hello from the"}, wantFinish: map[int]string{0: "stop"}, wantStop: " fake"},
		{name: "list prompt is a batch", body: `{"prompt":["a","b"]}`, wantTexts: map[int]string{0: text, 1: text}, wantFinish: map[int]string{0: "stop", 1: "stop"}},
		{name: "token ids", body: `{"prompt":[[1,2,3],[4]],"max_tokens":1}`, wantTexts: map[int]string{0: "Hello", 1: "Hello"}, wantFinish: map[int]string{0: "length", 1: "length"}},
		{name: "logprobs", body: `{"prompt":"x","logprobs":1}`, wantTexts: map[int]string{0: text}, wantFinish: map[int]string{0: "stop"}, logprobs: true},
	}
	_, base, c := serve(t, fakeserve.Options{Model: "m"})
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += "/streamed"
			}
			t.Run(name, func(t *testing.T) {
				body := tc.body
				if stream {
					body = strings.Replace(body, "{", `{"stream":true,`, 1)
				}
				resp, data, err := do(t, c, "POST", base+"/v1/completions", body, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("status %d, %v: %s", resp.StatusCode, err, data)
				}
				var got textResult
				if stream {
					frames, err := readFrames(t, strings.NewReader(string(data)))
					if err != nil {
						t.Fatal(err)
					}
					got = accumulate(t, datas(frames))
					if !got.done {
						t.Error("no [DONE]")
					}
				} else {
					got = accumulate(t, []string{string(data)})
				}
				for i, want := range tc.wantTexts {
					if got.texts[i] != want {
						t.Errorf("choice %d text %q, want %q", i, got.texts[i], want)
					}
					if got.finish[i] != tc.wantFinish[i] {
						t.Errorf("choice %d finish %q, want %q", i, got.finish[i], tc.wantFinish[i])
					}
				}
				if len(got.texts) != len(tc.wantTexts) {
					t.Errorf("%d choices, want %d", len(got.texts), len(tc.wantTexts))
				}
				if got.stop[0] != tc.wantStop {
					t.Errorf("stop_reason %q, want %q", got.stop[0], tc.wantStop)
				}
				if got.logprobs != tc.logprobs {
					t.Errorf("logprobs present %v, want %v", got.logprobs, tc.logprobs)
				}
			})
		}
	}
}

func TestCompletionsModes(t *testing.T) {
	tests := []struct {
		mode       fakeserve.Mode
		stream     bool
		wantStatus int
		wantDone   bool
		wantError  bool
		wantCut    bool
	}{
		{mode: fakeserve.ModeStatus503, wantStatus: 503},
		{mode: fakeserve.ModeStatus400, stream: true, wantStatus: 400},
		{mode: fakeserve.ModeCut, stream: true, wantStatus: 200, wantCut: true},
		{mode: fakeserve.ModeCut, wantStatus: 200, wantCut: true},
		{mode: fakeserve.ModeMidstreamError, stream: true, wantStatus: 200, wantDone: true, wantError: true},
		{mode: fakeserve.ModeInbandError, stream: true, wantStatus: 200, wantDone: true, wantError: true},
		{mode: fakeserve.ModeNoDone, stream: true, wantStatus: 200},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode)+map[bool]string{true: "/streamed"}[tc.stream], func(t *testing.T) {
			s, base, c := serve(t, fakeserve.Options{Model: "m", Mode: tc.mode})
			body := `{"prompt":"x"}`
			if tc.stream {
				body = `{"prompt":"x","stream":true}`
			}
			resp, data, err := do(t, c, "POST", base+"/v1/completions", body, nil)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, data)
			}
			if tc.wantCut != (err != nil) {
				t.Errorf("body read error %v, want cut %v", err, tc.wantCut)
			}
			if tc.stream && resp.StatusCode == 200 {
				got := accumulate(t, strings.Split(strings.TrimSpace(strings.ReplaceAll(string(data), "data: ", "")), "\n\n"))
				if got.done != tc.wantDone || got.errored != tc.wantError {
					t.Errorf("done %v errored %v, want %v %v: %s", got.done, got.errored, tc.wantDone, tc.wantError, data)
				}
			}
			if st := s.Stats(); st.Requests != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	t.Run("hang is cancelled", func(t *testing.T) {
		s, base, c := serve(t, fakeserve.Options{Model: "m", Mode: fakeserve.ModeHang})
		c.Timeout = 100 * time.Millisecond // the client gives up
		if resp, err := send(t.Context(), c, "POST", base+"/v1/completions", `{"prompt":"x"}`, nil); err == nil {
			resp.Body.Close()
			t.Fatal("a hung serve answered")
		}
		if err := s.WaitCancelled(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	})
}
