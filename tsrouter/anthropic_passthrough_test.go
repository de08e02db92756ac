package tsrouter_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// TestAnthropicPassthroughIsByteExact: an Anthropic caller on an Anthropic
// tier gets the serve's events byte for byte — odd framing, pings, thinking
// signatures and unknown events included — with only message_start's model
// replaced by the caller's string; the serve gets the caller's body with
// only the model changed, and the tier's headers, never the caller's.
func TestAnthropicPassthroughIsByteExact(t *testing.T) {
	upstream := "" +
		"event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\" : \"served-model\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":7,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\r\n\r\n" +
		": a comment carries no data and is not relayed\n\n" +
		"event: ping\ndata: {\"type\": \"ping\"}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm  \\n\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"c2lnbmF0dXJl\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"    indented\\tcode  \"}}\n\n" +
		"event: future_event\ndata: {\"type\":\"future_event\",\"model\":\"served-model\"}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n" +
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_x\",\"name\":\"f\",\"input\":{}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\": \"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n" +
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	raw, url := startRaw(t, "text/event-stream", upstream)
	base := startRouter(t, anthropicTier(url, ""), routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tierKey}})

	body := `{"model":"Chat",  "max_tokens":50,"stream":true,"system":[{"type":"text","text":"sys","cache_control":{"type":"ephemeral"}}],` +
		`"messages":[{"role":"user","content":[{"type":"text","text":"hi  there"}]}],"metadata":{"user_id":"u1"},"top_k":3,"service_tier":"auto","thinking":{"type":"enabled","budget_tokens":1024}}`
	resp := post(t, t.Context(), base+"/v1/messages", body, "X-Api-Key", routerToken, "Anthropic-Version", "2099-01-01", "Anthropic-Beta", "some-beta", "X-Custom", "secret-ish")
	got := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	want := strings.Replace(upstream, ": a comment carries no data and is not relayed\n\n", "", 1)
	want = strings.Replace(want, `"model" : "served-model"`, `"model" : "Chat"`, 1)
	if got != want {
		t.Errorf("relayed stream differs\n got: %q\nwant: %q", got, want)
	}
	if up := <-raw.lastBody; up != strings.Replace(body, `"model":"Chat"`, `"model":"served-model"`, 1) {
		t.Errorf("upstream body changed beyond the model:\n%s", up)
	}
	hdr := <-raw.lastHeader
	for name, want := range map[string]string{"X-Api-Key": tierKey, "Anthropic-Version": "2023-06-01", "Anthropic-Beta": "", "X-Custom": "", "Authorization": ""} {
		if got := hdr.Get(name); got != want {
			t.Errorf("upstream header %s = %q, want %q", name, got, want)
		}
	}
}

func TestAnthropicPassthroughNonStream(t *testing.T) {
	upstream := "{\n  \"id\": \"msg_1\",\n  \"type\": \"message\", \"role\": \"assistant\",\n  \"model\":   \"served-model\",\n  \"content\": [{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"},{\"type\":\"text\",\"text\":\"a  b \\n c\"}],\n  \"stop_reason\": \"end_turn\", \"stop_sequence\": null,\n  \"usage\": {\"input_tokens\":1,\"output_tokens\":2}\n}\n"
	_, url := startRaw(t, "application/json", upstream)
	base := startRouter(t, anthropicTier(url, ""), routerOpts{token: routerToken})
	resp := post(t, t.Context(), base+"/v1/messages", `{"model":"CHAT","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, anthropicAuth...)
	got := readAll(t, resp)
	if want := strings.Replace(upstream, `"served-model"`, `"CHAT"`, 1); resp.StatusCode != 200 || got != want {
		t.Errorf("status %d\n got: %q\nwant: %q", resp.StatusCode, got, want)
	}
}

// TestAnthropicTierFailures: every failure mode of an Anthropic serve, for
// both caller dialects, streamed and not: refusals before the 200 in the
// caller's envelope with the right status, breaks after it as one error
// frame in the caller's framing and no clean end.
func TestAnthropicTierFailures(t *testing.T) {
	fake, base := startAnthropic(t, fakeserve.Options{}, "")
	type want struct {
		status int    // 200: a stream that breaks (or ends) after the commit
		broken bool   // the stream ends in an error frame
		msg    string // part of the error message, if any
	}
	for _, tc := range []struct {
		mode              fakeserve.Mode
		stream, nonStream want
	}{
		{fakeserve.ModeRefuse, want{status: 503}, want{status: 503}},
		{fakeserve.ModeStatus503, want{status: 503}, want{status: 503}},
		{fakeserve.ModeInbandError, want{status: 503}, want{status: 503}},
		{fakeserve.ModeStatus400, want{status: 400, msg: "model upstream rejected the request: prompt is too long"}, want{status: 400, msg: "prompt is too long"}},
		{fakeserve.ModeStatus500, want{status: 502}, want{status: 502}},
		{fakeserve.ModeCut, want{status: 200, broken: true}, want{status: 502}},
		{fakeserve.ModeMidstreamError, want{status: 200, broken: true}, want{status: 502}},
		{fakeserve.ModeMalformed, want{status: 200, broken: true}, want{status: 502}},
		{fakeserve.ModeNoDone, want{status: 200}, want{status: 200}},
	} {
		for _, caller := range []string{"openai", "anthropic"} {
			for _, stream := range []bool{true, false} {
				w := tc.nonStream
				if stream {
					w = tc.stream
				}
				name := string(tc.mode) + "/" + caller + map[bool]string{true: "/stream", false: "/non-stream"}[stream]
				t.Run(name, func(t *testing.T) {
					fake.SetMode(tc.mode)
					defer fake.SetMode(fakeserve.ModeOK)
					path, hdr := "/v1/chat/completions", openaiAuth
					body := `{"model":"chat","stream":` + map[bool]string{true: "true", false: "false"}[stream] + `,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`
					if caller == "anthropic" {
						path, hdr = "/v1/messages", anthropicAuth
					}
					start := time.Now()
					resp := post(t, t.Context(), base+path, body, hdr...)
					got := readAll(t, resp)
					within(t, "the answer", time.Since(start), 2*time.Second)
					if resp.StatusCode != w.status {
						t.Fatalf("status %d, want %d: %s", resp.StatusCode, w.status, got)
					}
					if w.status != 200 {
						checkEnvelope(t, caller, got, w.msg)
						return
					}
					if !stream {
						return
					}
					checkStreamEnd(t, caller, got, w.broken)
				})
			}
		}
	}
}

// checkEnvelope checks an error body is in the caller's envelope, carries
// msg and nothing of the serve's beyond it.
func checkEnvelope(t *testing.T, caller, body, msg string) {
	t.Helper()
	var e struct {
		Type  string
		Error struct{ Type, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Type == "" || e.Error.Message == "" {
		t.Fatalf("error body %q", body)
	}
	if (caller == "anthropic") != (e.Type == "error") {
		t.Errorf("%s caller got the wrong envelope: %s", caller, body)
	}
	if !strings.Contains(e.Error.Message, msg) || strings.Contains(body, "overloaded_error") || strings.Contains(body, "127.0.0.1") {
		t.Errorf("message %q, want it to contain %q and nothing of the serve's envelope", e.Error.Message, msg)
	}
}

// checkStreamEnd checks how a committed stream ended: one error frame in
// the caller's dialect and no clean terminator, or a clean end.
func checkStreamEnd(t *testing.T, caller, body string, broken bool) {
	t.Helper()
	if caller == "openai" {
		events := sseEvents(body)
		last := events[len(events)-1]
		errored := strings.HasPrefix(last, `{"error":`)
		if errored != broken || strings.Contains(body, "[DONE]") == broken || strings.Count(body, `"error"`) > 1 {
			t.Errorf("broken=%t but the stream ended with %q:\n%s", broken, last, body)
		}
		if broken && last != `{"error":{"type":"upstream_error","message":"stream interrupted"}}` {
			t.Errorf("error frame %q", last)
		}
		return
	}
	names := sseEventNames(body)
	last := names[len(names)-1]
	if (last == "error") != broken || strings.Contains(body, "message_stop") == broken || names[0] != "message_start" {
		t.Errorf("broken=%t but the events were %v", broken, names)
	}
	if broken && !strings.HasSuffix(body, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"stream interrupted\"}}\n\n") {
		t.Errorf("error frame: %q", body)
	}
}

// TestAnthropicTierClientDisconnect: a caller that leaves mid-stream
// cancels the Anthropic serve's generation, in both caller dialects.
func TestAnthropicTierClientDisconnect(t *testing.T) {
	deltas := make([]string, 1000)
	for i := range deltas {
		deltas[i] = "tok "
	}
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
	}{
		{"openai caller", "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"hi"}]}`, openaiAuth},
		{"anthropic caller", "/v1/messages", `{"model":"chat","stream":true,"max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`, anthropicAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, base := startAnthropic(t, fakeserve.Options{Deltas: deltas, Pace: 10 * time.Millisecond}, "")
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+tc.path, strings.NewReader(tc.body))
			for i := 0; i+1 < len(tc.hdr); i += 2 {
				req.Header.Set(tc.hdr[i], tc.hdr[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			buf := make([]byte, 64)
			if _, err := io.ReadAtLeast(resp.Body, buf, 1); err != nil {
				t.Fatal(err)
			}
			cancel()
			resp.Body.Close()
			wctx, wcancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer wcancel()
			if err := fake.WaitCancelled(wctx, 1); err != nil {
				t.Fatalf("serve never saw the cancellation: %v (stats %+v)", err, fake.Stats())
			}
			if st := fake.Stats(); st.Completed != 0 {
				t.Errorf("serve completed the generation anyway: %+v", st)
			}
		})
	}
}

// TestAnthropicStreamEdges: how unusual Anthropic streams end, for both
// caller dialects — a clean close before the answer finished is a break,
// an error event first is classified by its type, a multi-line data event
// keeps its name.
func TestAnthropicStreamEdges(t *testing.T) {
	const start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"served-model\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
	const text = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
	const end = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":1}}\n\n"
	const stop = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	for _, tc := range []struct {
		name, upstream string
		status         int
		broken         bool
		msg            string
	}{
		{"closed before the answer finished", start + text, 200, true, ""},
		{"closed after stop_reason without message_stop", start + text + end, 200, false, ""},
		{"in-band error after the start", start + text + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n", 200, true, ""},
		{"invalid request as the first event", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"messages: bad role\"}}\n\n", 400, false, "messages: bad role"},
		{"rate limited as the first event", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n", 503, false, ""},
		{"multi-line data", strings.Replace(start, `"content":[],`, "\"content\":[],\ndata: ", 1) + text + end + stop, 200, false, ""},
	} {
		for _, caller := range []string{"openai", "anthropic"} {
			t.Run(tc.name+"/"+caller, func(t *testing.T) {
				_, url := startRaw(t, "text/event-stream", tc.upstream)
				base := startRouter(t, anthropicTier(url, ""), routerOpts{token: routerToken})
				path, hdr := "/v1/chat/completions", openaiAuth
				if caller == "anthropic" {
					path, hdr = "/v1/messages", anthropicAuth
				}
				resp := post(t, t.Context(), base+path, `{"model":"chat","stream":true,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, hdr...)
				got := readAll(t, resp)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
				}
				if tc.status != 200 {
					checkEnvelope(t, caller, got, tc.msg)
					return
				}
				checkStreamEnd(t, caller, got, tc.broken)
				if !tc.broken && !strings.Contains(got, "Hi") {
					t.Errorf("text lost: %s", got)
				}
				if caller == "anthropic" && !tc.broken && (!strings.HasPrefix(got, "event: message_start\ndata: ") || !strings.Contains(got, `"model":"chat"`)) {
					t.Errorf("message_start lost its name or model: %s", got)
				}
			})
		}
	}
}
