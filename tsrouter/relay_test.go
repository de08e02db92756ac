package tsrouter_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// rawUpstream serves a fixed SSE or JSON body, exactly as given, and keeps
// the last request it saw.
type rawUpstream struct {
	contentType string
	body        string
	lastBody    chan string
	lastHeader  chan http.Header
}

func startRaw(t *testing.T, contentType, body string) (*rawUpstream, string) {
	u := &rawUpstream{contentType: contentType, body: body, lastBody: make(chan string, 8), lastHeader: make(chan http.Header, 8)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.lastBody <- string(b)
		u.lastHeader <- r.Header.Clone()
		w.Header().Set("Content-Type", u.contentType)
		io.WriteString(w, u.body)
	}))
	t.Cleanup(srv.Close)
	return u, srv.URL
}

func TestStreamPassthroughIsByteExact(t *testing.T) {
	// Odd but valid upstream framing: spaces around colons, a comment line,
	// CRLF line ends, a reasoning field, whitespace-only and multi-space
	// deltas, a tool-call delta and a usage chunk. Only "model" may change.
	upstream := "" +
		": keep-alive comment\n\n" +
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\" : \"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
		"data:{\"id\":\"c1\", \"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"reasoning\":\"think  \\n\"}}]}\r\n\r\n" +
		"data: {\"id\":\"c1\",\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"    indented\\tcode  \"}}]}\n\n" +
		"data: {\"id\":\"c1\",\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\\\": 1\"}}]}}]}\n\n" +
		"data: {\"id\":\"c1\",\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n" +
		"data: {\"id\":\"c1\",\"model\":\"served-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5,\"total_tokens\":8,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n" +
		"data: [DONE]\n\n"
	_, url := startRaw(t, "text/event-stream", upstream)
	base := startRouter(t, oneTier(url, ""), routerOpts{})

	// The caller asks for the usage chunk (one the caller did not ask for
	// is the router's own and is not relayed: TestUsageAskedOfTheServe).
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"LLM.Primary","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	got := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	if us, err := strconv.Atoi(resp.Header.Get("X-Anvil-Overhead-Us")); err != nil || us < 0 || us > 1e6 {
		t.Errorf("X-Anvil-Overhead-Us %q", resp.Header.Get("X-Anvil-Overhead-Us"))
	}
	// The comment carries no data and is not relayed; every data event is,
	// byte for byte, with the caller's model string echoed.
	want := strings.TrimPrefix(upstream, ": keep-alive comment\n\n")
	want = strings.NewReplacer(`"served-model"`, `"LLM.Primary"`).Replace(want)
	if got != want {
		t.Errorf("relayed stream differs\n got: %q\nwant: %q", got, want)
	}
}

func TestNonStreamPassthroughIsByteExact(t *testing.T) {
	upstream := "{\n  \"id\": \"x\",\n  \"model\":   \"served-model\",\n  \"choices\": [{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a  b   c \\n  d\",\"reasoning_content\":\"r\"},\"finish_reason\":\"stop\"}],\n  \"usage\": {\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}\n}\n"
	_, url := startRaw(t, "application/json", upstream)
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	got := readAll(t, resp)
	want := strings.Replace(upstream, `"served-model"`, `"chat"`, 1)
	if _, err := strconv.Atoi(resp.Header.Get("X-Anvil-Overhead-Us")); err != nil {
		t.Errorf("X-Anvil-Overhead-Us %q", resp.Header.Get("X-Anvil-Overhead-Us"))
	}
	if resp.StatusCode != 200 || got != want {
		t.Errorf("status %d\n got: %q\nwant: %q", resp.StatusCode, got, want)
	}
}

func TestUpstreamRequestIsTheCallersWithOnlyRouterFieldsChanged(t *testing.T) {
	tests := []struct {
		name       string
		tierExtra  string
		body       string
		wantFields map[string]string // top-level field -> raw JSON upstream
		wantHeader map[string]string // response header
	}{
		{
			name:       "model rewritten, unknown fields kept verbatim",
			body:       `{"model":"chat","messages":[{"role":"user","content":"hi"}],"seed":7,"n":1,"logit_bias":{"50256":-100},"reasoning_effort":"max"}`,
			wantFields: map[string]string{"model": `"served-model"`, "seed": `7`, "n": `1`, "logit_bias": `{"50256":-100}`, "reasoning_effort": `"max"`},
		},
		{
			name:       "soft default fills a gap, caller wins over soft, hard wins over caller",
			tierExtra:  `extra_body = { temperature = 0.1, chat_template_kwargs = { enable_thinking = false } }` + "\n" + `extra_body_defaults = { top_p = 0.9, reasoning_effort = "low", temperature = 0.5 }`,
			body:       `{"model":"chat","messages":[],"temperature":1.5,"reasoning_effort":"high"}`,
			wantFields: map[string]string{"temperature": `0.1`, "reasoning_effort": `"high"`, "top_p": `0.9`, "chat_template_kwargs": `{"enable_thinking":false}`},
		},
		{
			name:       "max_tokens above the tier cap is clamped and reported",
			tierExtra:  `max_output_tokens = 512`,
			body:       `{"model":"chat","messages":[],"max_tokens":4000,"max_completion_tokens":3000}`,
			wantFields: map[string]string{"max_tokens": `512`, "max_completion_tokens": `512`},
			wantHeader: map[string]string{"X-Anvil-Warning": "max_tokens_clamped", "X-Anvil-Max-Tokens-Requested": "4000", "X-Anvil-Max-Tokens-Applied": "512", "Warning": `299 anvil-serving "max_tokens clamped from 4000 to 512"`},
		},
		{
			name:       "no budget gets the cap silently",
			tierExtra:  `max_output_tokens = 512`,
			body:       `{"model":"chat","messages":[]}`,
			wantFields: map[string]string{"max_tokens": `512`},
			wantHeader: map[string]string{"X-Anvil-Warning": ""},
		},
		{
			name:       "budget under the cap is untouched",
			tierExtra:  `max_output_tokens = 512`,
			body:       `{"model":"chat","messages":[],"max_tokens":100}`,
			wantFields: map[string]string{"max_tokens": `100`},
			wantHeader: map[string]string{"X-Anvil-Warning": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, url := startRaw(t, "application/json", `{"id":"x","model":"served-model","choices":[]}`)
			base := startRouter(t, oneTier(url, tc.tierExtra), routerOpts{env: map[string]string{"SERVE_A_KEY": "serve-secret"}})
			resp := post(t, t.Context(), base+"/v1/chat/completions", tc.body,
				"Authorization", "Bearer caller-token", "X-Custom", "caller", "Cookie", "a=b")
			readAll(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal([]byte(<-up.lastBody), &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.wantFields {
				if string(got[k]) != want {
					t.Errorf("upstream %s = %s, want %s", k, got[k], want)
				}
			}
			for k, want := range tc.wantHeader {
				if g := resp.Header.Get(k); g != want {
					t.Errorf("response header %s = %q, want %q", k, g, want)
				}
			}
			h := <-up.lastHeader
			if h.Get("Authorization") != "Bearer serve-secret" {
				t.Errorf("upstream Authorization = %q, want the tier's key", h.Get("Authorization"))
			}
			if h.Get("X-Custom") != "" || h.Get("Cookie") != "" {
				t.Errorf("caller headers leaked upstream: %v", h)
			}
		})
	}
}

func TestStreamReachesClientPerEvent(t *testing.T) {
	// The serve sends one delta and then waits until the test has seen it
	// through the router. Any buffering in the router deadlocks this test,
	// which the context deadline turns into a failure.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"first\"}}]}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "data: {\"model\":\"served-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"last\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(srv.Close)
	base := startRouter(t, oneTier(srv.URL, ""), routerOpts{})

	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":true}`)
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	got := ""
	deadline := time.AfterFunc(5*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	for !strings.Contains(got, "first") {
		n, err := resp.Body.Read(buf)
		got += string(buf[:n])
		if err != nil {
			t.Fatalf("first delta not delivered before the serve finished (router buffers?): %v; got %q", err, got)
		}
	}
	if strings.Contains(got, "last") {
		t.Fatal("serve had not produced the last delta yet")
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("stream did not finish cleanly: %q", rest)
	}
}

func TestFakeServeStreamThroughRouter(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{Deltas: []string{"a", " b", "  c"}})
	base := startRouter(t, oneTier(url, ""), routerOpts{})
	resp := post(t, t.Context(), base+"/v1/chat/completions", `{"model":"chat","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`)
	body := readAll(t, resp)
	ev := sseEvents(body)
	if resp.StatusCode != 200 || len(ev) < 6 || ev[len(ev)-1] != "[DONE]" {
		t.Fatalf("status %d events %q", resp.StatusCode, ev)
	}
	text := ""
	for _, e := range ev[:len(ev)-1] {
		var c struct {
			Model   string `json:"model"`
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("event %q: %v", e, err)
		}
		if c.Model != "chat" {
			t.Errorf("chunk model %q, want the caller's alias", c.Model)
		}
		for _, ch := range c.Choices {
			text += ch.Delta.Content
		}
	}
	if text != "a b  c" {
		t.Errorf("text %q", text)
	}
	if fake.Stats().Completed != 1 {
		t.Errorf("fake stats %+v", fake.Stats())
	}
}
