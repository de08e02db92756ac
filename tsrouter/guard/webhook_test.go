package guard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

const hookSecret = "hk-secret-7f3a9c" // the bearer secret's value; must never show

// fakeHook is an operator's hook on loopback.
type fakeHook struct {
	*httptest.Server
	calls    atomic.Int32
	canceled atomic.Bool
	req      atomic.Value // guard.WebhookRequest: the last request
	auth     atomic.Value // string: the last Authorization header
}

func startHook(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req guard.WebhookRequest)) *fakeHook {
	t.Helper()
	f := &fakeHook{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.auth.Store(r.Header.Get("Authorization"))
		var req guard.WebhookRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || dec.Decode(&req) != nil {
			http.Error(w, "want a POST of the webhook request JSON", http.StatusBadRequest)
			return
		}
		f.req.Store(req)
		answer(w, r, req)
	}))
	t.Cleanup(f.Close)
	return f
}

func hookAnswers(body string) func(http.ResponseWriter, *http.Request, guard.WebhookRequest) {
	return func(w http.ResponseWriter, _ *http.Request, _ guard.WebhookRequest) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// hookInput and hookOutput are what the webhook checks.
func hookInput() *guard.Content {
	return &guard.Content{Stage: guard.Input, Model: "chat", Texts: []guard.Text{
		{Role: "system", Kind: guard.KindSystem, Text: "You are terse."},
		{Role: "user", Kind: guard.KindMessage, Text: "tell me about project bluefalcon"},
	}}
}

func hookOutput() *guard.Content {
	return &guard.Content{Stage: guard.Output, Model: "chat", Answer: 1, Texts: []guard.Text{
		{Role: "user", Kind: guard.KindMessage, Text: "tell me about project bluefalcon"},
		{Role: "assistant", Kind: guard.KindMessage, Text: "bluefalcon ships in May"},
		{Role: "assistant", Kind: guard.KindToolArgs, Text: `{"q":"bluefalcon roadmap"}`},
	}}
}

func allTexts(c *guard.Content) []string {
	var out []string
	for _, t := range c.Texts {
		out = append(out, t.Text)
	}
	return out
}

func TestWebhookVerdicts(t *testing.T) {
	two := 1
	for _, tc := range []struct {
		name    string
		content *guard.Content
		answer  string
		want    guard.Verdict
		wantReq guard.WebhookRequest
	}{
		{
			name:    "allow",
			content: hookInput(),
			answer:  `{"action":"allow"}`,
			want:    guard.Verdict{Action: guard.Allow, Score: 1},
			wantReq: guard.WebhookRequest{Stage: "input", Provider: "hook", Model: "chat", Texts: []guard.WebhookText{
				{Role: "system", Kind: "system", Text: "You are terse."},
				{Role: "user", Kind: "message", Text: "tell me about project bluefalcon"},
			}},
		},
		{
			name:    "block with message and category",
			content: hookInput(),
			answer:  `{"action":"block","message":"Internal projects are off limits.","category":"internal_project","reason":"rule 12"}`,
			want:    guard.Verdict{Action: guard.Block, Score: 1, Category: "internal_project", Message: "Internal projects are off limits.", Reason: "rule 12"},
		},
		{
			name:    "block without category",
			content: hookInput(),
			answer:  `{"action":"block"}`,
			want:    guard.Verdict{Action: guard.Block, Score: 1, Category: "webhook", Reason: `webhook "hook" answered block`},
		},
		{
			name:    "flag",
			content: hookInput(),
			answer:  `{"action":"flag","category":"jailbreak"}`,
			want:    guard.Verdict{Action: guard.Flag, Score: 1, Category: "jailbreak", Reason: `webhook "hook" answered flag`},
		},
		{
			name:    "modify replaces every text",
			content: hookInput(),
			answer:  `{"action":"modify","texts":["You are terse.","tell me about project [internal]"]}`,
			want:    guard.Verdict{Action: guard.Transform, Score: 1, Reason: `webhook "hook" answered modify`, Texts: []string{"You are terse.", "tell me about project [internal]"}},
		},
		{
			name:    "output stage sends the answer index",
			content: hookOutput(),
			answer:  `{"action":"allow","unknown_field":"ignored"}`,
			want:    guard.Verdict{Action: guard.Allow, Score: 1},
			wantReq: guard.WebhookRequest{Stage: "output", Provider: "hook", Model: "chat", AnswerIndex: &two, Texts: []guard.WebhookText{
				{Role: "user", Kind: "message", Text: "tell me about project bluefalcon"},
				{Role: "assistant", Kind: "message", Text: "bluefalcon ships in May"},
				{Role: "assistant", Kind: "tool_arguments", Text: `{"q":"bluefalcon roadmap"}`},
			}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startHook(t, hookAnswers(tc.answer))
			p, err := guard.NewWebhook("hook", map[string]any{"url": f.URL + "/check", "secret_env": "HOOK_SECRET"}, env(map[string]string{"HOOK_SECRET": hookSecret}))
			if err != nil {
				t.Fatal(err)
			}
			if p.Name() != "hook" || p.Type() != "webhook" {
				t.Errorf("Name, Type = %q, %q", p.Name(), p.Type())
			}
			got, err := p.Check(t.Context(), tc.content)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("verdict = %+v, want %+v", got, tc.want)
			}
			if a := f.auth.Load(); a != "Bearer "+hookSecret {
				t.Errorf("Authorization = %q, want the bearer secret from HOOK_SECRET", a)
			}
			if tc.wantReq.Stage != "" {
				if req := f.req.Load(); !reflect.DeepEqual(req, tc.wantReq) {
					t.Errorf("request = %+v, want %+v", req, tc.wantReq)
				}
			}
		})
	}
	t.Run("no secret_env, no Authorization", func(t *testing.T) {
		f := startHook(t, hookAnswers(`{"action":"allow"}`))
		p, err := guard.NewWebhook("hook", map[string]any{"url": f.URL}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Check(t.Context(), hookInput()); err != nil {
			t.Fatal(err)
		}
		if a := f.auth.Load(); a != "" {
			t.Errorf("Authorization = %q, want none", a)
		}
	})
	t.Run("the wire request is the documented JSON", func(t *testing.T) {
		var raw map[string]any
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			json.NewDecoder(r.Body).Decode(&raw)
			io.WriteString(w, `{"action":"allow"}`)
		}))
		defer srv.Close()
		p, _ := guard.NewWebhook("hook", map[string]any{"url": srv.URL}, nil)
		if _, err := p.Check(t.Context(), hookInput()); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"stage": "input", "provider": "hook", "model": "chat", "texts": []any{
			map[string]any{"role": "system", "kind": "system", "text": "You are terse."},
			map[string]any{"role": "user", "kind": "message", "text": "tell me about project bluefalcon"},
		}}
		if !reflect.DeepEqual(raw, want) {
			t.Errorf("request JSON = %v, want %v", raw, want)
		}
	})
}

func TestWebhookFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content *guard.Content
		answer  func(http.ResponseWriter, *http.Request, guard.WebhookRequest)
		opts    map[string]any
		wantErr string
	}{
		{name: "failing hook", answer: func(w http.ResponseWriter, _ *http.Request, req guard.WebhookRequest) {
			http.Error(w, "cannot handle "+req.Texts[1].Text, 500)
		}, wantErr: "answered status 500"},
		{name: "forbidden", answer: func(w http.ResponseWriter, _ *http.Request, _ guard.WebhookRequest) {
			http.Error(w, "bad token "+hookSecret, 403)
		}, wantErr: "answered status 403"},
		{name: "slow hook", opts: map[string]any{"timeout": "100ms"}, answer: func(w http.ResponseWriter, r *http.Request, _ guard.WebhookRequest) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}, wantErr: "no answer within 100ms"},
		{name: "malformed JSON", answer: hookAnswers(`{"action":"allow"`), wantErr: "not a JSON object"},
		{name: "a list, not an object", answer: hookAnswers(`["allow"]`), wantErr: "not a JSON object"},
		{name: "no action", answer: hookAnswers(`{"message":"hi"}`), wantErr: "no action"},
		{name: "unknown action", answer: hookAnswers(`{"action":"deny"}`), wantErr: "unknown action"},
		{name: "modify with too few texts", answer: hookAnswers(`{"action":"modify","texts":["only one"]}`), wantErr: "has 1 texts, want 2"},
		{name: "modify with no texts", answer: hookAnswers(`{"action":"modify"}`), wantErr: "has 0 texts, want 2"},
		{name: "modify of the output with answer texts only", content: hookOutput(), answer: hookAnswers(`{"action":"modify","texts":["a","b"]}`), wantErr: "has 2 texts, want 3"},
		{name: "message echoes the text", answer: hookAnswers(`{"action":"block","message":"no tell me about project bluefalcon"}`), wantErr: "quotes the checked text"},
		{name: "answer too large", opts: map[string]any{"max_response_bytes": int64(64)}, answer: hookAnswers(`{"action":"allow","reason":"` + strings.Repeat("x", 100) + `"}`), wantErr: "larger than 64 bytes"},
		{name: "message too long", answer: hookAnswers(`{"action":"block","message":"` + strings.Repeat("m", 2000) + `"}`), wantErr: "message longer than 1024 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startHook(t, tc.answer)
			opts := map[string]any{"url": f.URL, "secret_env": "HOOK_SECRET"}
			for k, v := range tc.opts {
				opts[k] = v
			}
			p, err := guard.NewWebhook("hook", opts, env(map[string]string{"HOOK_SECRET": hookSecret}))
			if err != nil {
				t.Fatal(err)
			}
			c := tc.content
			if c == nil {
				c = hookInput()
			}
			start := time.Now()
			v, err := p.Check(t.Context(), c)
			if err == nil {
				t.Fatalf("verdict %+v, want an error", v)
			}
			if !strings.HasPrefix(err.Error(), `webhook "hook": `) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to name the provider and hold %q", err, tc.wantErr)
			}
			assertNoText(t, err, append(allTexts(c), hookSecret, "bluefalcon")...)
			if time.Since(start) > 3*time.Second {
				t.Errorf("Check took %v: timeout not honoured", time.Since(start))
			}
		})
	}
	t.Run("hook down", func(t *testing.T) {
		f := startHook(t, hookAnswers(`{"action":"allow"}`))
		url := f.URL
		f.Close()
		p, _ := guard.NewWebhook("hook", map[string]any{"url": url, "secret_env": "S"}, env(map[string]string{"S": hookSecret}))
		_, err := p.Check(t.Context(), hookInput())
		if err == nil || !strings.Contains(err.Error(), "request failed") {
			t.Fatalf("err = %v", err)
		}
		assertNoText(t, err, hookSecret, "bluefalcon")
	})
	t.Run("caller's context canceled cancels the hook's request", func(t *testing.T) {
		var sawCancel atomic.Bool
		f := startHook(t, func(w http.ResponseWriter, r *http.Request, _ guard.WebhookRequest) {
			<-r.Context().Done()
			sawCancel.Store(true)
		})
		p, _ := guard.NewWebhook("hook", map[string]any{"url": f.URL, "timeout": "10s"}, nil)
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := p.Check(ctx, hookInput())
		if err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Fatalf("err = %v, want canceled", err)
		}
		f.Close()
		if !sawCancel.Load() {
			t.Error("the hook's request was not canceled")
		}
	})
}

func TestWebhookOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		env     map[string]string
		wantErr string
	}{
		{name: "minimal", opts: map[string]any{"url": "http://127.0.0.1:9000/hook"}},
		{name: "all", opts: map[string]any{"url": "https://hooks.tailnet.ts.net/check", "timeout": "1500ms", "secret_env": "HOOK_SECRET", "max_response_bytes": int64(4096)}, env: map[string]string{"HOOK_SECRET": hookSecret}},
		{name: "no url", opts: map[string]any{}, wantErr: `webhook "hook": option "url": required`},
		{name: "not http", opts: map[string]any{"url": "unix:///run/hook.sock"}, wantErr: "want an http:// or https:// URL"},
		{name: "unknown key", opts: map[string]any{"url": "http://127.0.0.1/", "secret": hookSecret}, wantErr: `unknown option "secret"`},
		{name: "two unknown keys, sorted", opts: map[string]any{"url": "http://127.0.0.1/", "zeta": 1, "alpha": 2}, wantErr: `unknown option "alpha", "zeta"`},
		{name: "secret variable unset", opts: map[string]any{"url": "http://127.0.0.1/", "secret_env": "HOOK_SECRET"}, wantErr: `option "secret_env": environment variable HOOK_SECRET is unset or empty`},
		{name: "timeout not a string", opts: map[string]any{"url": "http://127.0.0.1/", "timeout": 2.5}, wantErr: `option "timeout": want a duration string such as "2s", got a number`},
		{name: "negative timeout", opts: map[string]any{"url": "http://127.0.0.1/", "timeout": "-1s"}, wantErr: "must be positive"},
		{name: "zero max_response_bytes", opts: map[string]any{"url": "http://127.0.0.1/", "max_response_bytes": int64(0)}, wantErr: "must be positive"},
		{name: "fractional max_response_bytes", opts: map[string]any{"url": "http://127.0.0.1/", "max_response_bytes": 1.5}, wantErr: "want an integer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := guard.NewWebhook("hook", tc.opts, env(tc.env))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				w := p.(*guard.Webhook)
				if w.SecretEnv() != tc.opts["secret_env"] && !(w.SecretEnv() == "" && tc.opts["secret_env"] == nil) {
					t.Errorf("SecretEnv = %q", w.SecretEnv())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			assertNoText(t, err, hookSecret)
		})
	}
}
