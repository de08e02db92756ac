package tsrouter_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/backends/fakeserve"
)

// The answer the fake serve streams: an email and a card split across
// frames, so only a gate that holds back a tail can mask them.
var secretDeltas = []string{"Contact ali", "ce@exam", "ple.com or card 4111 1111 ", "1111 1111", " please."}

const (
	promptSecret = "bob@example.org"
	guardPII     = `
[guardrails]
enabled = true

[[guardrails.providers]]
name = "pii-redaction"
type = "pii"
[guardrails.providers.options.actions]
ssn = "block"
`
)

// guardedRouter starts a fake serve of dialect ("openai" or "anthropic")
// and a router in front of it with the guardrails table gr.
func guardedRouter(t *testing.T, dialect, gr string, opts fakeserve.Options, log *slog.Logger) (*fakeserve.Server, string) {
	t.Helper()
	opts.APIKey = tierKey
	fake, url := startFake(t, opts)
	cfg := oneTier(url, "")
	if dialect == "anthropic" {
		cfg = anthropicTier(url, "")
	}
	h := newHandler(t, cfg+gr, routerOpts{token: routerToken, env: map[string]string{"SERVE_A_KEY": tierKey}}, log)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return fake, srv.URL
}

// answerText is every text an answer carries, decoded from its JSON (a
// reply) or its SSE events, in order: what the caller's SDK would show.
func answerText(body string) string {
	var b strings.Builder
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch x := v.(type) {
		case string:
			switch key {
			case "content", "text", "delta", "arguments", "partial_json", "message":
				b.WriteString(x)
			}
		case []any:
			for _, e := range x {
				walk(e, key)
			}
		case map[string]any:
			for k, e := range x {
				walk(e, k)
			}
		}
	}
	payloads := sseEvents(body)
	if len(payloads) == 0 {
		payloads = []string{body}
	}
	for _, p := range payloads {
		var v any
		if json.Unmarshal([]byte(p), &v) == nil {
			walk(v, "")
		}
	}
	return b.String()
}

type guardCase struct {
	path, body string
}

func guardCases(stream bool) map[string]guardCase {
	s := "false"
	if stream {
		s = "true"
	}
	msg := `"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"my email is ` + promptSecret + `"}]`
	return map[string]guardCase{
		"chat":        {"/v1/chat/completions", `{"model":"chat",` + msg + `,"stream":` + s + `}`},
		"messages":    {"/v1/messages", `{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":[{"type":"text","text":"my email is ` + promptSecret + `"}]}],"stream":` + s + `}`},
		"responses":   {"/v1/responses", `{"model":"chat","input":"my email is ` + promptSecret + `","stream":` + s + `}`},
		"completions": {"/v1/completions", `{"model":"chat","prompt":"my email is ` + promptSecret + `","stream":` + s + `}`},
	}
}

// Masking on every caller dialect, both serve dialects, streamed and
// not: the serve never sees the prompt's address, the caller never sees
// the answer's address or card.
func TestGuardrailsMaskEveryDialect(t *testing.T) {
	for _, dialect := range []string{"openai", "anthropic"} {
		for _, stream := range []bool{false, true} {
			for name, tc := range guardCases(stream) {
				if name == "completions" && dialect == "anthropic" {
					continue // no text completions on an Anthropic tier
				}
				t.Run(dialect+"/"+name+"/stream="+map[bool]string{true: "yes", false: "no"}[stream], func(t *testing.T) {
					fake, url := guardedRouter(t, dialect, guardPII, fakeserve.Options{Deltas: secretDeltas}, nil)
					resp := post(t, t.Context(), url+tc.path, tc.body, openaiAuth...)
					body := readAll(t, resp)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("status %d: %s", resp.StatusCode, body)
					}
					sent := string(fake.LastRequest().Body)
					if strings.Contains(sent, promptSecret) || !strings.Contains(sent, "REDACTED:EMAIL") {
						t.Errorf("the serve got the prompt unmasked: %s", sent)
					}
					got := answerText(body)
					for _, secret := range []string{"alice@example.com", "4111 1111 1111 1111"} {
						if strings.Contains(got, secret) || strings.Contains(body, secret) {
							t.Errorf("the caller got %q: %q", secret, got)
						}
					}
					if !strings.Contains(got, "Contact <REDACTED:EMAIL> or card <REDACTED:CREDIT_CARD> please.") {
						t.Errorf("answer %q\nbody %s", got, body)
					}
					if stream && (strings.Contains(body, "stream interrupted") || strings.Contains(body, "guardrail_blocked")) {
						t.Errorf("stream ended with an error: %s", body)
					}
				})
			}
		}
	}
}

// A block on the input: 400 guardrail_blocked in the caller's envelope,
// X-Should-Retry: false, the provider and category named, the serve not
// called, the value nowhere.
func TestGuardrailsBlockInput(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fake, url := guardedRouter(t, "openai", guardPII, fakeserve.Options{}, log)
	const ssn = "123-45-6789"
	for _, tc := range []struct{ path, body, envelope string }{
		{"/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"ssn ` + ssn + `"}]}`, `{"error":{"type":"guardrail_blocked"`},
		{"/v1/messages", `{"model":"chat","max_tokens":9,"messages":[{"role":"user","content":"ssn ` + ssn + `"}]}`, `{"type":"error","error":{"type":"guardrail_blocked"`},
		{"/v1/responses", `{"model":"chat","input":"ssn ` + ssn + `"}`, `"type":"guardrail_blocked"`},
	} {
		resp := post(t, t.Context(), url+tc.path, tc.body, openaiAuth...)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Should-Retry") != "false" {
			t.Errorf("%s: status %d, X-Should-Retry %q", tc.path, resp.StatusCode, resp.Header.Get("X-Should-Retry"))
		}
		if !strings.Contains(body, tc.envelope) || !strings.Contains(body, `pii-redaction`) || !strings.Contains(body, `pii`) {
			t.Errorf("%s: body %s", tc.path, body)
		}
		if strings.Contains(body, ssn) {
			t.Errorf("%s: the error echoes the value: %s", tc.path, body)
		}
	}
	if n := fake.Stats().Requests; n != 0 {
		t.Errorf("the serve was called %d times", n)
	}
	metrics := fetch(t, url+"/metrics")
	if !strings.Contains(metrics, `anvil_guardrail_verdicts_total{category="pii",provider="pii-redaction",stage="input",verdict="block"} 3`) {
		t.Errorf("metrics:\n%s", grepLines(metrics, "guardrail"))
	}
	decisions := fetch(t, url+"/v1/decisions")
	if !strings.Contains(decisions, `"guardrails":["pii-redaction:input:block:pii"]`) || !strings.Contains(decisions, `"guardrail_entities":{"ssn":1}`) {
		t.Errorf("decision record lacks the verdict: %s", decisions)
	}
	for name, out := range map[string]string{"logs": logs.String(), "metrics": metrics, "decisions": decisions} {
		if strings.Contains(out, ssn) {
			t.Errorf("%s hold the matched value", name)
		}
	}
	if !strings.Contains(logs.String(), "pii-redaction:input:block:pii") || !strings.Contains(logs.String(), "ssn=1") {
		t.Errorf("the audit line lacks the verdict and entity counts:\n%s", logs.String())
	}
}

// A block mid-stream: what was safe went out, then the dialect's error
// event (never a clean end), and the serve's request was cancelled.
func TestGuardrailsBlockMidStream(t *testing.T) {
	deltas := []string{"Sure, the number", " is 123-45-", "6789 and more"}
	for _, tc := range []struct {
		dialect, path, body, errorEvent, cleanEnd string
	}{
		{"openai", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hi"}],"stream":true}`, `data: {"error":{"type":"guardrail_blocked"`, "[DONE]"},
		{"anthropic", "/v1/messages", `{"model":"chat","max_tokens":64,"messages":[{"role":"user","content":"hi"}],"stream":true}`, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"guardrail_blocked\"", "message_stop"},
		{"openai", "/v1/responses", `{"model":"chat","input":"hi","stream":true}`, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"guardrail_blocked\"", "response.completed"},
	} {
		t.Run(tc.dialect+tc.path, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			// Paced, with more to come: the serve is still answering when
			// the block cancels it.
			many := append(append([]string{}, deltas...), strings.Split(strings.Repeat("x ", 200), " ")...)
			fake, url := guardedRouter(t, tc.dialect, guardPII, fakeserve.Options{Deltas: many, Pace: 5 * time.Millisecond}, log)
			resp := post(t, t.Context(), url+tc.path, tc.body, openaiAuth...)
			body := readAll(t, resp)
			if !strings.Contains(body, tc.errorEvent) || strings.Contains(body, tc.cleanEnd) {
				t.Errorf("stream did not end with the error event:\n%s", body)
			}
			// The text the caller's SDK shows, not the raw body: random
			// ids in the events may contain the digits.
			if text := answerText(body); strings.Contains(text, "123-45") || strings.Contains(text, "6789") {
				t.Errorf("the blocked value reached the caller:\n%s", body)
			}
			if !strings.Contains(answerText(body), "Sure, the number") {
				t.Errorf("the safe prefix was not released:\n%s", body)
			}
			if err := fake.WaitCancelled(t.Context(), 1); err != nil {
				t.Errorf("the serve's request was not cancelled: %v", err)
			}
			if !strings.Contains(logs.String(), "output blocked mid-stream by guardrail pii-redaction") || !strings.Contains(logs.String(), "output:block:pii") || strings.Contains(logs.String(), "123-45") {
				t.Errorf("log:\n%s", logs.String())
			}
		})
	}
}

// Monitor mode: the serve and the caller see exactly what they would
// without guardrails, and the verdicts are recorded.
func TestGuardrailsMonitorChangesNothing(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	gr := strings.Replace(guardPII, "enabled = true", "enabled = true\nmode = \"monitor\"", 1)
	fake, url := guardedRouter(t, "openai", gr, fakeserve.Options{Deltas: secretDeltas}, log)
	body := `{"model":"chat","messages":[{"role":"user","content":"ssn 123-45-6789, mail ` + promptSecret + `"}],"stream":true}`
	resp := post(t, t.Context(), url+"/v1/chat/completions", body, openaiAuth...)
	got := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if !strings.Contains(string(fake.LastRequest().Body), promptSecret) {
		t.Errorf("monitor mode changed the prompt")
	}
	if a := answerText(got); !strings.Contains(a, "Contact alice@example.com or card 4111 1111 1111 1111 please.") {
		t.Errorf("monitor mode changed the answer: %q", a)
	}
	l := logs.String()
	for _, want := range []string{"pii-redaction:input:block:pii", "pii-redaction:output:transform:pii", "email=2", "credit_card=1"} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	for _, v := range []string{"123-45-6789", promptSecret, "alice@example.com"} {
		if strings.Contains(l, v) {
			t.Errorf("log holds %q", v)
		}
	}
}

// Guardrails off: the caller gets the serve's bytes exactly as a router
// without a [guardrails] table relays them.
func TestGuardrailsOffRelaysIdentically(t *testing.T) {
	off := strings.Replace(guardPII, "enabled = true", "enabled = false", 1)
	for _, stream := range []bool{false, true} {
		for name, tc := range guardCases(stream) {
			_, plain := guardedRouter(t, "openai", "", fakeserve.Options{Deltas: secretDeltas}, nil)
			_, guarded := guardedRouter(t, "openai", off, fakeserve.Options{Deltas: secretDeltas}, nil)
			a := readAll(t, post(t, t.Context(), plain+tc.path, tc.body, openaiAuth...))
			b := readAll(t, post(t, t.Context(), guarded+tc.path, tc.body, openaiAuth...))
			if norm(a) != norm(b) {
				t.Errorf("%s stream=%v: bodies differ:\n%s\n%s", name, stream, a, b)
			}
			if !strings.Contains(answerText(b), "alice@example.com") {
				t.Errorf("%s: guardrails off changed the answer: %s", name, b)
			}
		}
	}
}

// norm drops what differs between two answers of the same serve: ids and
// timestamps.
func norm(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		var v any
		p, _ := strings.CutPrefix(line, "data: ")
		if json.Unmarshal([]byte(p), &v) == nil {
			var drop func(v any)
			drop = func(v any) {
				switch x := v.(type) {
				case map[string]any:
					for _, k := range []string{"id", "created", "created_at", "item_id"} {
						delete(x, k)
					}
					for _, e := range x {
						drop(e)
					}
				case []any:
					for _, e := range x {
						drop(e)
					}
				}
			}
			drop(v)
			b, _ := json.Marshal(v)
			line = string(b)
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// fetch GETs url with the router token and returns the body.
func fetch(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+routerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
