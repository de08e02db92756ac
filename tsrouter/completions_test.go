package tsrouter_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// completionsConfig has one fake serve behind four tiers: "chat" (plain),
// "capped" (max_output_tokens = 3), "small" (context_limit = 64) and
// "claude" (the serve as an Anthropic-dialect tier).
func completionsConfig(url string) string {
	tier := func(id, dialect, extra string) string {
		return `
[[router.tiers]]
id = "` + id + `"
base_url = "` + url + `"
dialect = "` + dialect + `"
privacy = "local"
tool_support = true
auth_env = "SERVE_A_KEY"
model = "served-model"
` + extra
	}
	return `
[router]
relay_timeout = 2.0
` + tier("local-a", "openai", "context_limit = 8192") +
		tier("local-capped", "openai", "context_limit = 8192\nmax_output_tokens = 3") +
		tier("local-small", "openai", "context_limit = 64") +
		tier("local-claude", "anthropic", "context_limit = 8192") + `
[router.model_routes]
chat = "local-a"
capped = "local-capped"
small = "local-small"
claude = "local-claude"
`
}

// textCompletion is a text_completion reply, whole or one chunk.
type textCompletion struct {
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
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error map[string]any `json:"error"`
}

// textAnswer is a completion, streamed or not, accumulated per choice.
type textAnswer struct {
	Texts, Finish, Stop map[int]string
	Logprobs            bool
	Done, Errored       bool
}

// readCompletion accumulates a reply; every object must name model.
func readCompletion(t *testing.T, body string, stream bool, model string) textAnswer {
	t.Helper()
	a := textAnswer{Texts: map[int]string{}, Finish: map[int]string{}, Stop: map[int]string{}}
	payloads := []string{body}
	if stream {
		payloads = sseEvents(body)
	}
	for _, p := range payloads {
		if p == "[DONE]" {
			a.Done = true
			continue
		}
		var c textCompletion
		if err := json.Unmarshal([]byte(p), &c); err != nil {
			t.Fatalf("payload %q: %v", p, err)
		}
		if c.Error != nil {
			a.Errored = true
			continue
		}
		if c.Object != "text_completion" || c.Model != model {
			t.Errorf("object %q model %q, want text_completion %q", c.Object, c.Model, model)
		}
		for _, ch := range c.Choices {
			a.Texts[ch.Index] += ch.Text
			if ch.FinishReason != nil {
				a.Finish[ch.Index] = *ch.FinishReason
			}
			if ch.StopReason != nil {
				a.Stop[ch.Index] = *ch.StopReason
			}
			a.Logprobs = a.Logprobs || (len(ch.Logprobs) > 0 && string(ch.Logprobs) != "null")
		}
	}
	return a
}

// TestCompletions: POST /v1/completions end to end against the fake serve,
// streamed and not: the serve's completions endpoint is called with the
// caller's fields, the reply names the caller's model, the output cap and
// the context gate apply as for chat, and refusals use the OpenAI envelope.
func TestCompletions(t *testing.T) {
	fake, url := startFake(t, fakeserve.Options{})
	base := startRouter(t, completionsConfig(url), routerOpts{token: routerToken})
	text := strings.Join(fakeserve.DefaultDeltas(), "")
	const prompt, suffix = "def add(a, b):\n    ", "\n\nprint(add(1, 2))\n"
	fim := strings.Join(fakeserve.FIMDeltas(prompt, suffix), "")
	promptJSON, _ := json.Marshal(prompt)
	suffixJSON, _ := json.Marshal(suffix)
	long := strings.Repeat("word ", 100)
	tests := []struct {
		name     string
		body     string
		status   int
		model    string         // the model replies name ("" = the request's)
		texts    map[int]string // per choice
		finish   string         // of choice 0
		stop     string         // stop_reason of choice 0
		logprobs bool
		header   map[string]string
		upstream map[string]string // top-level fields the serve received
		errType  string            // for refusals
		errIn    string
		// reached: whether the serve was called.
		reached bool
	}{
		{name: "string prompt", body: `{"model":"chat","prompt":"Say hi"}`, status: 200, texts: map[int]string{0: text}, finish: "stop",
			upstream: map[string]string{"model": `"served-model"`, "prompt": `"Say hi"`}, reached: true},
		{name: "caller's model spelling is echoed", body: `{"model":" Chat ","prompt":"x"}`, status: 200, model: " Chat ", texts: map[int]string{0: text}, finish: "stop", reached: true},
		{name: "fill in the middle with suffix", body: `{"model":"chat","prompt":` + string(promptJSON) + `,"suffix":` + string(suffixJSON) + `,"max_tokens":64,"temperature":0}`, status: 200,
			texts: map[int]string{0: fim}, finish: "stop",
			upstream: map[string]string{"prompt": string(promptJSON), "suffix": string(suffixJSON), "max_tokens": "64", "temperature": "0"}, reached: true},
		{name: "list prompt is a batch", body: `{"model":"chat","prompt":["a","b"]}`, status: 200, texts: map[int]string{0: text, 1: text}, finish: "stop", reached: true},
		{name: "token id prompt", body: `{"model":"chat","prompt":[1,2,3],"max_tokens":2}`, status: 200, texts: map[int]string{0: "Hello from"}, finish: "length", reached: true},
		{name: "echo, logprobs and stop reach the serve", body: `{"model":"chat","prompt":"Q: ","echo":true,"logprobs":1,"stop":[" fake"]}`, status: 200,
			texts: map[int]string{0: "Q: Hello from the"}, finish: "stop", stop: " fake", logprobs: true,
			upstream: map[string]string{"echo": "true", "logprobs": "1", "stop": `[" fake"]`}, reached: true},
		{name: "max_tokens over the tier cap is clamped and reported", body: `{"model":"capped","prompt":"x","max_tokens":100}`, status: 200,
			texts: map[int]string{0: "Hello from the"}, finish: "length",
			header:   map[string]string{"X-Anvil-Warning": "max_tokens_clamped", "X-Anvil-Max-Tokens-Requested": "100", "X-Anvil-Max-Tokens-Applied": "3"},
			upstream: map[string]string{"max_tokens": "3"}, reached: true},
		{name: "no max_tokens gets the cap silently", body: `{"model":"capped","prompt":"x"}`, status: 200,
			texts: map[int]string{0: "Hello from the"}, finish: "length", header: map[string]string{"X-Anvil-Warning": ""},
			upstream: map[string]string{"max_tokens": "3"}, reached: true},
		{name: "prompt over the context window is 413", body: `{"model":"small","prompt":"` + long + `"}`, status: 413, errType: "payload_too_large", errIn: "context window"},
		{name: "suffix counts toward the context window", body: `{"model":"small","prompt":"x","suffix":"` + long + `"}`, status: 413, errType: "payload_too_large"},
		{name: "one oversize prompt of a batch is 413", body: `{"model":"small","prompt":["x","` + long + `"]}`, status: 413, errType: "payload_too_large"},
		{name: "token ids over the context window", body: `{"model":"small","prompt":[` + strings.Repeat("1,", 80) + `1]}`, status: 413, errType: "payload_too_large"},
		{name: "small prompt fits the small tier", body: `{"model":"small","prompt":"x","suffix":"y"}`, status: 200, texts: map[int]string{0: strings.Join(fakeserve.FIMDeltas("x", "y"), "")}, finish: "stop", reached: true},
		{name: "Anthropic-dialect tier is 400", body: `{"model":"claude","prompt":"x"}`, status: 400, errType: "invalid_request_error", errIn: "Anthropic-dialect tier"},
		{name: "missing prompt", body: `{"model":"chat"}`, status: 400, errType: "invalid_request_error", errIn: "prompt is required"},
		{name: "prompt of the wrong type", body: `{"model":"chat","prompt":{"text":"x"}}`, status: 400, errType: "invalid_request_error", errIn: "prompt must be"},
		{name: "mixed list prompt", body: `{"model":"chat","prompt":["x",1]}`, status: 400, errType: "invalid_request_error", errIn: "prompt must be"},
		{name: "suffix not a string", body: `{"model":"chat","prompt":"x","suffix":1}`, status: 400, errType: "invalid_request_error", errIn: "suffix must be a string"},
		{name: "unknown model", body: `{"model":"nope","prompt":"x"}`, status: 404, errType: "model_not_found"},
	}
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
				before := fake.Stats().Requests
				resp := post(t, t.Context(), base+"/v1/completions", body, openaiAuth...)
				got := readAll(t, resp)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
				}
				if reached := fake.Stats().Requests > before; reached != tc.reached {
					t.Errorf("serve called %v, want %v", reached, tc.reached)
				}
				for k, want := range tc.header {
					if g := resp.Header.Get(k); g != want {
						t.Errorf("header %s = %q, want %q", k, g, want)
					}
				}
				if tc.status != 200 {
					var env struct {
						Error struct{ Type, Message string }
						Type  *string
					}
					if err := json.Unmarshal([]byte(got), &env); err != nil || env.Type != nil || env.Error.Type != tc.errType || !strings.Contains(env.Error.Message, tc.errIn) {
						t.Errorf("error body %s, want the OpenAI envelope with %s naming %q", got, tc.errType, tc.errIn)
					}
					if resp.Header.Get("X-Should-Retry") != "false" {
						t.Error("a refusal retrying cannot fix lacks X-Should-Retry: false")
					}
					return
				}
				last := fake.LastRequest()
				if last.Path != "/v1/completions" {
					t.Errorf("serve called at %s", last.Path)
				}
				var up map[string]json.RawMessage
				json.Unmarshal(last.Body, &up)
				for k, want := range tc.upstream {
					if string(up[k]) != want {
						t.Errorf("serve received %s = %s, want %s", k, up[k], want)
					}
				}
				model := tc.model
				if model == "" {
					var req struct{ Model string }
					json.Unmarshal([]byte(tc.body), &req)
					model = req.Model
				}
				a := readCompletion(t, got, stream, model)
				if stream != a.Done {
					t.Errorf("[DONE] %v, want %v", a.Done, stream)
				}
				if len(a.Texts) != len(tc.texts) {
					t.Errorf("%d choices, want %d", len(a.Texts), len(tc.texts))
				}
				for i, want := range tc.texts {
					if a.Texts[i] != want {
						t.Errorf("choice %d: %q, want %q", i, a.Texts[i], want)
					}
				}
				if a.Finish[0] != tc.finish || a.Stop[0] != tc.stop || a.Logprobs != tc.logprobs {
					t.Errorf("finish %q stop %q logprobs %v, want %q %q %v", a.Finish[0], a.Stop[0], a.Logprobs, tc.finish, tc.stop, tc.logprobs)
				}
			})
		}
	}
}

// TestCompletionsRelayIsByteExact: the serve's reply and stream reach the
// caller byte for byte but for model, whatever their framing.
func TestCompletionsRelayIsByteExact(t *testing.T) {
	tests := []struct {
		name, contentType, upstream, body string
	}{
		{
			name:        "non-streamed",
			contentType: "application/json",
			upstream:    "{\n  \"id\": \"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\n  \"model\":   \"served-model\",\"choices\":[{\"index\":0,\"text\":\"  x =  1\\n\",\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":null}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n",
			body:        `{"model":"LLM.Primary","prompt":"x","suffix":"y"}`,
		},
		{
			name:        "streamed",
			contentType: "text/event-stream",
			upstream: "" +
				"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\" : \"served-model\",\"choices\":[{\"index\":0,\"text\":\"  x\",\"logprobs\":null,\"finish_reason\":null}]}\n\n" +
				"data:{\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"served-model\",\"choices\":[{\"index\":0,\"text\":\" =\\t1\\n\",\"logprobs\":{\"tokens\":[\" =\"],\"token_logprobs\":[-0.1],\"top_logprobs\":[{\" =\":-0.1}],\"text_offset\":[3]},\"finish_reason\":null}]}\r\n\r\n" +
				"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"served-model\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\",\"stop_reason\":\"\\n\\n\"}]}\n\n" +
				"data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"created\":1,\"model\":\"served-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n" +
				"data: [DONE]\n\n",
			body: `{"model":"LLM.Primary","prompt":"x","suffix":"y","stream":true,"stream_options":{"include_usage":true}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up, url := startRaw(t, tc.contentType, tc.upstream)
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			resp := post(t, t.Context(), base+"/v1/completions", tc.body)
			got := readAll(t, resp)
			want := strings.ReplaceAll(tc.upstream, `"served-model"`, `"LLM.Primary"`)
			if resp.StatusCode != 200 || got != want {
				t.Errorf("status %d\n got: %q\nwant: %q", resp.StatusCode, got, want)
			}
			var sent map[string]json.RawMessage
			json.Unmarshal([]byte(<-up.lastBody), &sent)
			if string(sent["suffix"]) != `"y"` || string(sent["model"]) != `"served-model"` {
				t.Errorf("serve received %v", sent)
			}
		})
	}
}

// TestCompletionsServeFailures: the first-event gate and the broken-stream
// rule, as for chat: a failure before the first event is a clean status; a
// break after the 200 ends with one error frame and no [DONE].
func TestCompletionsServeFailures(t *testing.T) {
	tests := []struct {
		mode      fakeserve.Mode
		stream    bool
		status    int
		errType   string
		wantTexts string // streamed text before the break
	}{
		{mode: fakeserve.ModeCut, stream: true, status: 200, wantTexts: "Hello from"},
		{mode: fakeserve.ModeMidstreamError, stream: true, status: 200, wantTexts: "Hello from"},
		{mode: fakeserve.ModeMalformed, stream: true, status: 200, wantTexts: "Hello from the"},
		{mode: fakeserve.ModeInbandError, stream: true, status: 503, errType: "service_unavailable"},
		{mode: fakeserve.ModeStatus503, stream: true, status: 503, errType: "service_unavailable"},
		{mode: fakeserve.ModeStatus503, status: 503, errType: "service_unavailable"},
		{mode: fakeserve.ModeStatus400, status: 400, errType: "invalid_request_error"},
		{mode: fakeserve.ModeCut, status: 502, errType: "upstream_error"},
		{mode: fakeserve.ModeRefuse, status: 503, errType: "service_unavailable"},
	}
	for _, tc := range tests {
		t.Run(string(tc.mode)+map[bool]string{true: "/streamed"}[tc.stream], func(t *testing.T) {
			_, url := startFake(t, fakeserve.Options{Mode: tc.mode})
			base := startRouter(t, oneTier(url, ""), routerOpts{})
			body := `{"model":"chat","prompt":"x"}`
			if tc.stream {
				body = `{"model":"chat","prompt":"x","stream":true}`
			}
			resp := post(t, t.Context(), base+"/v1/completions", body)
			got := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.errType != "" {
				var env struct{ Error struct{ Type string } }
				if json.Unmarshal([]byte(got), &env); env.Error.Type != tc.errType {
					t.Errorf("error %s, want %s", got, tc.errType)
				}
				return
			}
			events := sseEvents(got)
			var prefix strings.Builder
			for _, e := range events[:len(events)-1] {
				prefix.WriteString("data: " + e + "\n\n")
			}
			a := readCompletion(t, prefix.String(), true, "chat")
			if a.Texts[0] != tc.wantTexts {
				t.Errorf("text before the break %q, want %q", a.Texts[0], tc.wantTexts)
			}
			if last := events[len(events)-1]; !strings.Contains(last, `"error"`) || strings.Contains(got, "[DONE]") {
				t.Errorf("a broken stream must end with one error frame and no [DONE]: %q", got)
			}
		})
	}
}

// TestCompletionsKeysAndRecords: API keys and grants apply as for chat,
// refusals in the OpenAI envelope; a served completion leaves a decision
// record of kind "completion" and counts in the request metrics.
func TestCompletionsKeysAndRecords(t *testing.T) {
	_, url := startFake(t, fakeserve.Options{})
	blocking := startRouter(t, keysConfig(url, "blocking"), routerOpts{env: map[string]string{"PARTNER_KEY": partnerKey}, adminToken: "admin-0123456789abcdef"})
	bearer := func(k string) []string { return []string{"Authorization", "Bearer " + k} }
	tests := []struct {
		name    string
		model   string
		hdr     []string
		status  int
		errType string
		errIn   string
	}{
		{name: "no key", model: "fast", status: 401, errType: "authentication_error"},
		{name: "expired key", model: "fast", hdr: bearer(expiredKey), status: 401, errType: "authentication_error"},
		{name: "read-only key", model: "fast", hdr: bearer(readerKey), status: 403, errType: "permission_error"},
		{name: "model outside allowed_backends", model: "chat", hdr: bearer(partnerKey), status: 403, errType: "permission_error", errIn: `model "chat" is not permitted`},
		{name: "allowed model", model: "fast", hdr: append(bearer(partnerKey), "X-Request-Id", "cmpl-job-1"), status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(t, t.Context(), blocking+"/v1/completions", `{"model":"`+tc.model+`","prompt":"x"}`, tc.hdr...)
			got := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.status == 200 {
				return
			}
			var env struct {
				Error struct{ Type, Message string }
				Type  *string
			}
			if json.Unmarshal([]byte(got), &env); env.Type != nil || env.Error.Type != tc.errType || !strings.Contains(env.Error.Message, tc.errIn) {
				t.Errorf("error %s, want the OpenAI envelope with %s", got, tc.errType)
			}
			if strings.Contains(got, "sk-") {
				t.Error("a refusal echoes a key")
			}
		})
	}

	get := func(path string) string {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", blocking+path, nil)
		req.Header.Set("X-Admin-Token", "admin-0123456789abcdef")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
		}
		return body
	}
	var one struct{ Record map[string]any }
	json.Unmarshal([]byte(get("/v1/requests/cmpl-job-1")), &one)
	if r := one.Record; r["kind"] != "completion" || r["route"] != "fast" || r["served_tier"] != "local-b" {
		t.Errorf("decision record %v", r)
	}
	if body := get("/v1/decisions?limit=50"); !strings.Contains(body, `"kind":"completion"`) || strings.Contains(body, partnerKey) {
		t.Errorf("/v1/decisions does not show the completion (or shows the key): %s", body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader([]byte(get("/metrics"))))
	if err != nil {
		t.Fatal(err)
	}
	served := 0.0
	for _, m := range families["anvil_router_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["alias"] == "fast" && labels["status"] == "200" {
			served += m.GetCounter().GetValue()
		}
	}
	if served != 1 {
		t.Errorf("anvil_router_requests_total{alias=fast,status=200} = %v, want 1", served)
	}
}
