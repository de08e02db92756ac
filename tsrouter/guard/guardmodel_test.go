package guard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// fakeGuardServe is an OpenAI-compatible serve of a guard model on
// loopback: POST /v1/chat/completions answers reply's text as the
// assistant message, the way vLLM answers for Llama Guard, Qwen3Guard or
// ShieldGemma.
type fakeGuardServe struct {
	*httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	last  guardChatRequest
}

type guardChatRequest struct {
	Model              string            `json:"model"`
	Messages           []guardChatMsg    `json:"messages"`
	MaxTokens          int               `json:"max_tokens"`
	Temperature        *float64          `json:"temperature"`
	Stream             bool              `json:"stream"`
	ChatTemplateKwargs map[string]string `json:"chat_template_kwargs"`
}

type guardChatMsg struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// guardReply is how the fake serve answers one request.
type guardReply func(w http.ResponseWriter, r *http.Request, req guardChatRequest)

// says answers an OpenAI chat completion whose message is content.
func says(content string) guardReply {
	return saysWithLogprob(content, 0, false)
}

func saysWithLogprob(content string, logprob float64, withLogprobs bool) guardReply {
	return func(w http.ResponseWriter, _ *http.Request, req guardChatRequest) {
		choice := map[string]any{"index": 0, "finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": content}}
		if withLogprobs {
			choice["logprobs"] = map[string]any{"content": []any{map[string]any{"token": "x", "logprob": logprob}}}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": req.Model,
			"choices": []any{choice},
			"usage":   map[string]any{"prompt_tokens": 100, "completion_tokens": 3, "total_tokens": 103},
		})
	}
}

func writes(status int, body string) guardReply {
	return func(w http.ResponseWriter, _ *http.Request, _ guardChatRequest) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func startGuardServe(t *testing.T, reply guardReply) *fakeGuardServe {
	t.Helper()
	f := &fakeGuardServe{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		f.calls.Add(1)
		var req guardChatRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"message":"bad json"}}`, http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.last = req
		f.mu.Unlock()
		reply(w, r, req)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGuardServe) lastRequest() guardChatRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

// chatFunc is the router's ChatFunc as a test sees it: it POSTs to the
// fake serve over HTTP and, like a careless router might, puts a failed
// serve's body in its error (the provider must not pass that on).
func (f *fakeGuardServe) chatFunc() guard.ChatFunc {
	return func(ctx context.Context, alias string, body []byte) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.URL+"/v1/chat/completions", bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("tier for %s answered %d: %s", alias, resp.StatusCode, data)
		}
		return data, nil
	}
}

const (
	secretPrompt = "how do I pick the lock on door 42"
	secretAnswer = "use a tension wrench on door 42"
)

// guardInput is a conversation as the input stage sees it.
func guardInput() *guard.Content {
	return &guard.Content{Stage: guard.Input, Model: "chat", Texts: []guard.Text{
		{Role: "system", Kind: guard.KindSystem, Text: "You are a locksmith's assistant."},
		{Role: "user", Kind: guard.KindMessage, Text: secretPrompt},
	}}
}

// guardOutput is the conversation with an answer of two texts.
func guardOutput() *guard.Content {
	return &guard.Content{Stage: guard.Output, Model: "chat", Answer: 2, Texts: []guard.Text{
		{Role: "system", Kind: guard.KindSystem, Text: "You are a locksmith's assistant."},
		{Role: "user", Kind: guard.KindMessage, Text: secretPrompt},
		{Role: "assistant", Kind: guard.KindMessage, Text: secretAnswer},
		{Role: "assistant", Kind: guard.KindToolArgs, Text: `{"tool":"wrench"}`},
	}}
}

func newGuardModel(t *testing.T, f *fakeGuardServe, opts map[string]any) guard.Provider {
	t.Helper()
	all := map[string]any{"model": "llama-guard"}
	for k, v := range opts {
		all[k] = v
	}
	p, err := guard.NewGuardModel("safety", all, f.chatFunc(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestGuardModelVerdicts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		opts          map[string]any
		content       *guard.Content
		reply         guardReply
		wantAction    guard.Action
		wantCategory  string
		wantScore     float64
		wantReasonHas string
	}{
		{name: "llama guard: safe", reply: says("safe"), wantAction: guard.Allow, wantScore: 1},
		{name: "llama guard: safe after blank lines", reply: says("\n\nsafe"), wantAction: guard.Allow, wantScore: 1},
		{name: "llama guard: unsafe S1 is violence", reply: says("unsafe\nS1"), wantAction: guard.Block, wantCategory: "violence", wantScore: 1, wantReasonHas: "unsafe S1"},
		{name: "llama guard: the first code names the category", reply: says("unsafe\nS10,S1"), wantAction: guard.Block, wantCategory: "hate_speech", wantScore: 1, wantReasonHas: "S10,S1"},
		{name: "llama guard: S7 privacy is pii", reply: says("unsafe\nS7"), wantAction: guard.Block, wantCategory: "pii", wantScore: 1},
		{name: "llama guard: S11 is self_harm", reply: says("unsafe\nS11"), wantAction: guard.Block, wantCategory: "self_harm", wantScore: 1},
		{name: "llama guard: S14 keeps its own label", reply: says("unsafe\nS14"), wantAction: guard.Block, wantCategory: "code_interpreter_abuse", wantScore: 1},
		{name: "llama guard: an unknown code is kept as is", reply: says("unsafe\nS15"), wantAction: guard.Block, wantCategory: "S15", wantScore: 1},
		{name: "llama guard: unsafe without codes", reply: says("unsafe"), wantAction: guard.Block, wantCategory: "unsafe", wantScore: 1},
		{name: "llama guard: the first token's probability is the score", reply: saysWithLogprob("unsafe\nS9", math.Log(0.9), true), wantAction: guard.Block, wantCategory: "dangerous", wantScore: 0.9},
		{name: "llama guard: output stage", content: guardOutput(), reply: says("unsafe\nS2"), wantAction: guard.Block, wantCategory: "dangerous", wantScore: 1},
		{name: "llama guard: an ignored first category yields to the next", opts: map[string]any{"ignore_categories": []any{"specialized_advice"}}, reply: says("unsafe\nS6,S1"), wantAction: guard.Block, wantCategory: "violence", wantScore: 1, wantReasonHas: "S6,S1"},
		{name: "llama guard: only ignored categories allow", opts: map[string]any{"ignore_categories": []any{"elections", "specialized_advice"}}, reply: says("unsafe\nS13,S6"), wantAction: guard.Allow, wantScore: 1, wantReasonHas: "only ignored categories"},
		{name: "qwen3 guard: an ignored controversial label allows", opts: map[string]any{"format": "qwen3_guard", "ignore_categories": []any{"politically_sensitive_topics"}}, reply: says("Safety: Controversial\nCategories: Politically Sensitive Topics"), wantAction: guard.Allow, wantScore: 1},
		{name: "qwen3 guard: safe", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Safe\nCategories: None"), wantAction: guard.Allow, wantScore: 1},
		{name: "qwen3 guard: unsafe violent", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Unsafe\nCategories: Violent"), wantAction: guard.Block, wantCategory: "violence", wantScore: 1, wantReasonHas: "qwen3_guard: unsafe (violence)"},
		{name: "qwen3 guard: several categories", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Unsafe\nCategories: Suicide & Self-Harm, PII"), wantAction: guard.Block, wantCategory: "self_harm", wantScore: 1, wantReasonHas: "(self_harm,pii)"},
		{name: "qwen3 guard: jailbreak", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Unsafe\nCategories: Jailbreak"), wantAction: guard.Block, wantCategory: "jailbreak", wantScore: 1},
		{name: "qwen3 guard: controversial is a flag", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Controversial\nCategories: Politically Sensitive Topics"), wantAction: guard.Flag, wantCategory: "politically_sensitive_topics", wantScore: 1},
		{name: "qwen3 guard: unethical acts keep their label", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Unsafe\nCategories: Unethical Acts"), wantAction: guard.Block, wantCategory: "unethical_acts", wantScore: 1},
		{name: "qwen3 guard: response with refusal line", opts: map[string]any{"format": "qwen3_guard"}, content: guardOutput(), reply: says("Safety: Safe\nCategories: None\nRefusal: Yes"), wantAction: guard.Allow, wantScore: 1},
		{name: "qwen3 guard: unknown category slugged", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Unsafe\nCategories: Weird New Thing"), wantAction: guard.Block, wantCategory: "weird_new_thing", wantScore: 1},
		{name: "shieldgemma: yes violates the policy", opts: map[string]any{"format": "shieldgemma", "policy": "harassment"}, reply: says("Yes"), wantAction: guard.Block, wantCategory: "harassment", wantScore: 1, wantReasonHas: "harassment policy"},
		{name: "shieldgemma: no, with reasoning", opts: map[string]any{"format": "shieldgemma"}, reply: says("No. The question asks about"), wantAction: guard.Allow, wantScore: 1},
		{name: "shieldgemma: default policy is dangerous", opts: map[string]any{"format": "shieldgemma"}, content: guardOutput(), reply: saysWithLogprob("Yes", math.Log(0.75), true), wantAction: guard.Block, wantCategory: "dangerous", wantScore: 0.75},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startGuardServe(t, tc.reply)
			p := newGuardModel(t, f, tc.opts)
			c := tc.content
			if c == nil {
				c = guardInput()
			}
			v, err := p.Check(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if v.Action != tc.wantAction || v.Category != tc.wantCategory || math.Abs(v.Score-tc.wantScore) > 1e-9 {
				t.Errorf("verdict = %v %q score %v, want %v %q score %v", v.Action, v.Category, v.Score, tc.wantAction, tc.wantCategory, tc.wantScore)
			}
			if !strings.Contains(v.Reason, tc.wantReasonHas) {
				t.Errorf("reason %q, want it to hold %q", v.Reason, tc.wantReasonHas)
			}
			for _, s := range []string{secretPrompt, secretAnswer} {
				if strings.Contains(v.Reason, s) || strings.Contains(v.Message, s) {
					t.Errorf("verdict holds checked text: %+v", v)
				}
			}
			if n := f.calls.Load(); n != 1 {
				t.Errorf("%d calls to the model, want 1", n)
			}
			if req := f.lastRequest(); req.Model != "llama-guard" || req.Stream || req.Temperature == nil || *req.Temperature != 0 || req.MaxTokens <= 0 {
				t.Errorf("request model %q stream %v temperature %v max_tokens %d; want the alias, no stream, temperature 0", req.Model, req.Stream, req.Temperature, req.MaxTokens)
			}
		})
	}
}

// llamaGuardCategoryLines are the S1..S14 lines of Llama Guard 3/4's prompt.
var llamaGuardCategoryLines = []string{
	"S1: Violent Crimes.", "S2: Non-Violent Crimes.", "S3: Sex Crimes.", "S4: Child Exploitation.",
	"S5: Defamation.", "S6: Specialized Advice.", "S7: Privacy.", "S8: Intellectual Property.",
	"S9: Indiscriminate Weapons.", "S10: Hate.", "S11: Self-Harm.", "S12: Sexual Content.",
	"S13: Elections.", "S14: Code Interpreter Abuse.",
}

var qwen3GuardCategoryLines = []string{
	"Violent.", "Non-violent Illegal Acts.", "Sexual Content or Sexual Acts.", "PII.", "Suicide & Self-Harm.",
	"Unethical Acts.", "Politically Sensitive Topics.", "Copyright Violation.",
}

func TestGuardModelPrompts(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       map[string]any
		content    *guard.Content
		reply      string
		wantRoles  []string          // roles of the messages sent
		wantHas    []string          // in the (last) message's text, in order
		wantNot    []string          // nowhere in the messages
		wantKwargs map[string]string // chat_template_kwargs substrings
		wantMax    int
	}{
		{
			name:      "llama guard raw, input: the User role, categories and conversation",
			opts:      map[string]any{"template": "raw"},
			reply:     "safe",
			wantRoles: []string{"user"},
			wantHas: append(append([]string{"Task: Check if there is unsafe content in 'User' messages in conversations according our safety policy with the below categories.", "<BEGIN UNSAFE CONTENT CATEGORIES>"},
				llamaGuardCategoryLines...),
				"<END UNSAFE CONTENT CATEGORIES>", "<BEGIN CONVERSATION>", "User: You are a locksmith's assistant.\n\n"+secretPrompt, "<END CONVERSATION>",
				"Provide your safety assessment for ONLY THE LAST User message in the above conversation:", "First line must read 'safe' or 'unsafe'.", "comma-separated list of violated categories"),
			wantNot: []string{"Agent:"},
			wantMax: 32,
		},
		{
			name:      "llama guard raw, output: the Agent role and the answer",
			opts:      map[string]any{"template": "raw"},
			content:   guardOutput(),
			reply:     "safe",
			wantRoles: []string{"user"},
			wantHas:   []string{"unsafe content in 'Agent' messages", "S14: Code Interpreter Abuse.", "User: You are a locksmith's assistant.\n\n" + secretPrompt, "Agent: " + secretAnswer + "\n\n{\"tool\":\"wrench\"}", "ONLY THE LAST Agent message"},
		},
		{
			name:      "llama guard chat, input: alternating turns for the serve's template",
			content:   guardInput(),
			reply:     "safe",
			wantRoles: []string{"user"},
			wantHas:   []string{"You are a locksmith's assistant.\n\n" + secretPrompt},
			wantNot:   []string{"Task:", "S1:"},
		},
		{
			name:      "llama guard chat, output: the answer is the last assistant turn",
			content:   guardOutput(),
			reply:     "safe",
			wantRoles: []string{"user", "assistant"},
			wantHas:   []string{secretAnswer + "\n\n{\"tool\":\"wrench\"}"},
		},
		{
			name: "llama guard chat, multi-turn: roles alternate, the answer never merges with history",
			content: &guard.Content{Stage: guard.Output, Answer: 3, Texts: []guard.Text{
				{Role: "user", Kind: guard.KindMessage, Text: "hi"},
				{Role: "assistant", Kind: guard.KindMessage, Text: "hello"},
				{Role: "assistant", Kind: guard.KindToolArgs, Text: `{"x":1}`},
				{Role: "assistant", Kind: guard.KindMessage, Text: secretAnswer},
			}},
			reply:     "safe",
			wantRoles: []string{"user", "assistant", "user", "assistant"},
			wantHas:   []string{secretAnswer},
		},
		{
			name:      "qwen3 guard raw, input: policy, all nine categories, USER turns",
			opts:      map[string]any{"format": "qwen3_guard", "template": "raw"},
			reply:     "Safety: Safe\nCategories: None",
			wantRoles: []string{"user"},
			wantHas: append(append([]string{"THE LAST USER's query", "<BEGIN SAFETY POLICY>", "**Safety: Safe**", "**Safety: Unsafe**", "**Safety: Controversial**", "<BEGIN UNSAFE CONTENT CATEGORIES>"},
				qwen3GuardCategoryLines...), "Jailbreak.", "<END UNSAFE CONTENT CATEGORIES>",
				"USER: You are a locksmith's assistant.\n\n"+secretPrompt, "'Safety: Safe', 'Safety: Unsafe', 'Safety: Controversial'", "Categories: None"),
			wantNot: []string{"Refusal"},
			wantMax: 64,
		},
		{
			name:      "qwen3 guard raw, output: the ASSISTANT's response and the refusal line",
			opts:      map[string]any{"format": "qwen3_guard", "template": "raw"},
			content:   guardOutput(),
			reply:     "Safety: Safe\nCategories: None\nRefusal: No",
			wantRoles: []string{"user"},
			wantHas:   append([]string{"THE LAST ASSISTANT's response"}, append(qwen3GuardCategoryLines, "USER: ", "ASSISTANT: "+secretAnswer, "Refusal:")...),
			wantNot:   []string{"Jailbreak."},
		},
		{
			name:      "qwen3 guard chat: turns for the serve's template",
			opts:      map[string]any{"format": "qwen3_guard"},
			content:   guardOutput(),
			reply:     "Safety: Safe\nCategories: None\nRefusal: No",
			wantRoles: []string{"user", "assistant"},
			wantHas:   []string{secretAnswer},
			wantNot:   []string{"# Task"},
		},
		{
			name:      "shieldgemma raw, input: the question and the policy",
			opts:      map[string]any{"format": "shieldgemma", "template": "raw", "policy": "hate_speech"},
			reply:     "No",
			wantRoles: []string{"user"},
			wantHas:   []string{"whether a user prompt is in violation of the defined safety policies", "<start_of_turn>\nHuman Question: You are a locksmith's assistant.\n\n" + secretPrompt + "\n<end_of_turn>", "Our safety principle is defined in the below:", `* "No Hate Speech": The prompt shall not`, "Does the human question violate the above principle? Your answer must start with 'Yes' or 'No'."},
			wantNot:   []string{"Chatbot Response"},
			wantMax:   8,
		},
		{
			name:      "shieldgemma raw, output: the last question and the chatbot's response",
			opts:      map[string]any{"format": "shieldgemma", "template": "raw", "policy_text": `"No Lockpicking": The chatbot shall not teach lockpicking.`},
			content:   guardOutput(),
			reply:     "No",
			wantRoles: []string{"user"},
			wantHas:   []string{"whether an AI response to a prompt is in violation", "Human Question: You are a locksmith's assistant.\n\n" + secretPrompt + "\n", "Chatbot Response: " + secretAnswer, `* "No Lockpicking"`, "Does the Chatbot Response violate the above principle?"},
			wantNot:   []string{"No Dangerous Content"},
		},
		{
			name:       "shieldgemma chat: question, response and the guideline kwarg",
			opts:       map[string]any{"format": "shieldgemma", "policy": "sexual_content", "max_tokens": int64(3)},
			content:    guardOutput(),
			reply:      "No",
			wantRoles:  []string{"user", "assistant"},
			wantHas:    []string{secretAnswer},
			wantKwargs: map[string]string{"guideline": `"No Sexually Explicit Information": The chatbot shall not`},
			wantMax:    3,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startGuardServe(t, says(tc.reply))
			p := newGuardModel(t, f, tc.opts)
			c := tc.content
			if c == nil {
				c = guardInput()
			}
			if _, err := p.Check(t.Context(), c); err != nil {
				t.Fatal(err)
			}
			req := f.lastRequest()
			var roles []string
			var all strings.Builder
			for _, m := range req.Messages {
				roles = append(roles, m.Role)
				all.WriteString(m.Content)
			}
			if strings.Join(roles, ",") != strings.Join(tc.wantRoles, ",") {
				t.Errorf("roles %v, want %v", roles, tc.wantRoles)
			}
			if len(req.Messages) == 0 {
				t.Fatal("no messages")
			}
			last := req.Messages[len(req.Messages)-1].Content
			rest := last
			for _, s := range tc.wantHas {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("last message lacks %q (in order) in:\n%s", s, last)
					continue
				}
				rest = rest[i+len(s):]
			}
			for _, s := range tc.wantNot {
				if strings.Contains(all.String(), s) {
					t.Errorf("messages hold %q", s)
				}
			}
			for k, want := range tc.wantKwargs {
				if !strings.Contains(req.ChatTemplateKwargs[k], want) {
					t.Errorf("chat_template_kwargs[%q] = %q, want it to hold %q", k, req.ChatTemplateKwargs[k], want)
				}
			}
			if tc.wantKwargs == nil && req.ChatTemplateKwargs != nil {
				t.Errorf("chat_template_kwargs = %v, want none", req.ChatTemplateKwargs)
			}
			if tc.wantMax != 0 && req.MaxTokens != tc.wantMax {
				t.Errorf("max_tokens = %d, want %d", req.MaxTokens, tc.wantMax)
			}
		})
	}
}

func TestGuardModelFailures(t *testing.T) {
	slow := func(w http.ResponseWriter, r *http.Request, _ guardChatRequest) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		reply   guardReply
		wantErr string
	}{
		{name: "failing serve, its error echoing the prompt", reply: writes(500, `{"error":{"message":"cannot classify: `+secretPrompt+`"}}`), wantErr: `calling model "llama-guard"`},
		{name: "slow model", opts: map[string]any{"timeout": "100ms"}, reply: slow, wantErr: `model "llama-guard" gave no verdict within 100ms`},
		{name: "malformed JSON", reply: writes(200, `{"choices":[`), wantErr: "something other than OpenAI chat JSON"},
		{name: "no choices", reply: writes(200, `{"choices":[]}`), wantErr: "answered no message"},
		{name: "null content", reply: writes(200, `{"choices":[{"message":{"role":"assistant","content":null}}]}`), wantErr: "answered no message"},
		{name: "llama guard: prose, not a verdict, quoting the prompt", reply: says("The user asks: " + secretPrompt), wantErr: "not in the format's verdict format"},
		{name: "llama guard: categories that are not codes", reply: says("unsafe\nviolent crimes"), wantErr: "not a code like S1"},
		{name: "qwen3 guard: no Safety line", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Categories: Violent"), wantErr: "not in the format's verdict format"},
		{name: "qwen3 guard: unknown safety level", opts: map[string]any{"format": "qwen3_guard"}, reply: says("Safety: Maybe\nCategories: None"), wantErr: "not in the format's verdict format"},
		{name: "qwen3 guard: llama guard's answer", opts: map[string]any{"format": "qwen3_guard"}, reply: says("unsafe\nS1"), wantErr: "not in the format's verdict format"},
		{name: "shieldgemma: neither yes nor no", opts: map[string]any{"format": "shieldgemma"}, reply: says("Perhaps"), wantErr: "not in the format's verdict format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startGuardServe(t, tc.reply)
			p := newGuardModel(t, f, tc.opts)
			for _, c := range []*guard.Content{guardInput(), guardOutput()} {
				start := time.Now()
				v, err := p.Check(t.Context(), c)
				if err == nil {
					t.Fatalf("%v: verdict %+v, want an error", c.Stage, v)
				}
				if !strings.HasPrefix(err.Error(), `guard_model "safety": `) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%v: error %q, want it to name the provider and hold %q", c.Stage, err, tc.wantErr)
				}
				assertNoText(t, err, append(allTexts(c), "door 42")...)
				if time.Since(start) > 3*time.Second {
					t.Errorf("Check took %v: timeout not honoured", time.Since(start))
				}
			}
			if n := f.calls.Load(); n != 2 {
				t.Errorf("%d calls, want 2: a failure is never cached", n)
			}
		})
	}
	t.Run("the caller's cancellation reaches the serve", func(t *testing.T) {
		var sawCancel atomic.Bool
		f := startGuardServe(t, func(w http.ResponseWriter, r *http.Request, _ guardChatRequest) {
			<-r.Context().Done()
			sawCancel.Store(true)
		})
		p := newGuardModel(t, f, map[string]any{"timeout": "10s"})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(100*time.Millisecond, cancel)
		if _, err := p.Check(ctx, guardInput()); err == nil {
			t.Fatal("no error")
		}
		f.Close()
		if !sawCancel.Load() {
			t.Error("the guard model's request was not canceled")
		}
	})
	t.Run("the timeout cancels the serve's request", func(t *testing.T) {
		var sawCancel atomic.Bool
		f := startGuardServe(t, func(w http.ResponseWriter, r *http.Request, _ guardChatRequest) {
			select {
			case <-r.Context().Done():
				sawCancel.Store(true)
			case <-time.After(5 * time.Second):
			}
		})
		p := newGuardModel(t, f, map[string]any{"timeout": "50ms"})
		_, err := p.Check(t.Context(), guardInput())
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want one that is context.DeadlineExceeded", err)
		}
		f.Close()
		if !sawCancel.Load() {
			t.Error("the guard model's request outlived the timeout")
		}
	})
}

func TestGuardModelNothingToClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *guard.Content
	}{
		{name: "empty request", c: &guard.Content{Stage: guard.Input}},
		{name: "empty texts", c: &guard.Content{Stage: guard.Input, Texts: []guard.Text{{Role: "user", Text: ""}}}},
		{name: "output without answer texts", c: &guard.Content{Stage: guard.Output, Answer: 1, Texts: []guard.Text{{Role: "user", Text: "hi"}}}},
		{name: "output with an empty answer", c: &guard.Content{Stage: guard.Output, Answer: 1, Texts: []guard.Text{{Role: "user", Text: "hi"}, {Role: "assistant", Text: ""}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startGuardServe(t, says("unsafe\nS1"))
			v, err := newGuardModel(t, f, nil).Check(t.Context(), tc.c)
			if err != nil || v.Action != guard.Allow {
				t.Fatalf("Check = %+v, %v; want allow", v, err)
			}
			if n := f.calls.Load(); n != 0 {
				t.Errorf("%d calls, want none", n)
			}
		})
	}
}

func TestGuardModelCache(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 12, 2, 22, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	advance := func(d time.Duration) { now.Add(int64(d)) }

	other := guardInput()
	other.Texts[1].Text = "what is a deadbolt"
	otherModel := guardInput()
	otherModel.Model = "another-alias" // the caller's alias does not change a verdict
	for _, tc := range []struct {
		name      string
		opts      map[string]any
		steps     []func() *guard.Content // checks in order
		between   func()                  // run after the first check
		wantCalls int32
	}{
		{name: "second identical check is a hit", steps: []func() *guard.Content{guardInput, guardInput}, wantCalls: 1},
		{name: "another caller alias is still a hit", steps: []func() *guard.Content{guardInput, func() *guard.Content { return otherModel }}, wantCalls: 1},
		{name: "another text is a miss", steps: []func() *guard.Content{guardInput, func() *guard.Content { return other }}, wantCalls: 2},
		{name: "another stage is a miss", steps: []func() *guard.Content{guardOutput, func() *guard.Content {
			c := guardOutput()
			c.Stage = guard.Input
			c.Answer = 0
			return c
		}}, wantCalls: 2},
		{name: "another answer split is a miss", steps: []func() *guard.Content{guardOutput, func() *guard.Content {
			c := guardOutput()
			c.Answer = 3
			return c
		}}, wantCalls: 2},
		{name: "cache_size 0 turns it off", opts: map[string]any{"cache_size": int64(0)}, steps: []func() *guard.Content{guardInput, guardInput}, wantCalls: 2},
		{name: "an expired verdict is a miss", opts: map[string]any{"cache_ttl": "1m"}, steps: []func() *guard.Content{guardInput, guardInput}, between: func() { advance(time.Minute) }, wantCalls: 2},
		{name: "a fresh verdict is a hit", opts: map[string]any{"cache_ttl": "1m"}, steps: []func() *guard.Content{guardInput, guardInput}, between: func() { advance(59 * time.Second) }, wantCalls: 1},
		{name: "least recently used is evicted", opts: map[string]any{"cache_size": int64(1)}, steps: []func() *guard.Content{guardInput, func() *guard.Content { return other }, guardInput}, wantCalls: 3},
		{name: "room for two keeps both", opts: map[string]any{"cache_size": int64(2)}, steps: []func() *guard.Content{guardInput, func() *guard.Content { return other }, guardInput, func() *guard.Content { return other }}, wantCalls: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startGuardServe(t, says("unsafe\nS2"))
			all := map[string]any{"model": "llama-guard"}
			for k, v := range tc.opts {
				all[k] = v
			}
			p, err := guard.NewGuardModel("safety", all, f.chatFunc(), clock)
			if err != nil {
				t.Fatal(err)
			}
			for i, step := range tc.steps {
				v, err := p.Check(t.Context(), step())
				if err != nil {
					t.Fatal(err)
				}
				if v.Action != guard.Block || v.Category != "dangerous" {
					t.Errorf("check %d: verdict %+v, want the model's block (cached or not)", i, v)
				}
				if i == 0 && tc.between != nil {
					tc.between()
				}
			}
			if n := f.calls.Load(); n != tc.wantCalls {
				t.Errorf("%d calls to the model, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestGuardModelOptions(t *testing.T) {
	chat := func(context.Context, string, []byte) ([]byte, error) { return nil, nil }
	for _, tc := range []struct {
		name    string
		opts    map[string]any
		nilChat bool
		wantErr string
	}{
		{name: "minimal", opts: map[string]any{"model": "llama-guard"}},
		{name: "all", opts: map[string]any{"model": "qg", "format": "qwen3_guard", "template": "raw", "timeout": "3s", "max_tokens": int64(40), "cache_size": int64(10), "cache_ttl": "0s", "ignore_categories": []any{"copyright_violation"}}},
		{name: "shieldgemma with policy", opts: map[string]any{"model": "sg", "format": "shieldgemma", "policy": "hate_speech", "policy_text": "No insults."}},
		{name: "no model", opts: map[string]any{}, wantErr: `guard_model "safety": option "model": required`},
		{name: "unknown format", opts: map[string]any{"model": "m", "format": "llamaguard"}, wantErr: `option "format": want one of "llama_guard", "qwen3_guard", "shieldgemma"`},
		{name: "unknown template", opts: map[string]any{"model": "m", "template": "jinja"}, wantErr: `option "template": want one of "chat", "raw"`},
		{name: "policy without shieldgemma", opts: map[string]any{"model": "m", "policy": "dangerous"}, wantErr: `option "policy": only for format "shieldgemma"`},
		{name: "unknown policy", opts: map[string]any{"model": "m", "format": "shieldgemma", "policy": "rudeness"}, wantErr: `option "policy": want one of`},
		{name: "unknown key", opts: map[string]any{"model": "m", "cache": int64(5)}, wantErr: `guard_model "safety": unknown option "cache"`},
		{name: "timeout as a number", opts: map[string]any{"model": "m", "timeout": int64(5)}, wantErr: `option "timeout": want a duration string`},
		{name: "negative cache_size", opts: map[string]any{"model": "m", "cache_size": int64(-1)}, wantErr: `option "cache_size": must not be negative`},
		{name: "zero max_tokens", opts: map[string]any{"model": "m", "max_tokens": int64(0)}, wantErr: `option "max_tokens": must be positive`},
		{name: "model not a string", opts: map[string]any{"model": int64(3)}, wantErr: `option "model": want a string`},
		{name: "ignore_categories not a list", opts: map[string]any{"model": "m", "ignore_categories": "elections"}, wantErr: `option "ignore_categories": want a list of strings`},
		{name: "no ChatFunc", opts: map[string]any{"model": "m"}, nilChat: true, wantErr: "nil ChatFunc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := guard.ChatFunc(chat)
			if tc.nilChat {
				c = nil
			}
			p, err := guard.NewGuardModel("safety", tc.opts, c, time.Now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if p.Name() != "safety" || p.Type() != "guard_model" {
					t.Errorf("Name, Type = %q, %q", p.Name(), p.Type())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestGuardModelChatErrors: what the router's ChatFunc says reaches the
// error, unless it may quote the checked text.
func TestGuardModelChatErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		chatErr error
		wantHas string
		wantNot []string
	}{
		{name: "a plain cause is kept", chatErr: fmt.Errorf("no tier serves alias llama-guard"), wantHas: `calling model "llama-guard": no tier serves alias llama-guard`},
		{name: "a cause quoting a fragment is dropped", chatErr: fmt.Errorf("prompt rejected near 'pick the lock on d'"), wantHas: `calling model "llama-guard"`, wantNot: []string{"pick the lock", "rejected"}},
		{name: "a cause quoting the whole prompt is dropped", chatErr: fmt.Errorf("bad: %s", secretPrompt), wantNot: []string{secretPrompt, "bad"}},
		{name: "a long cause is dropped", chatErr: fmt.Errorf("%s", strings.Repeat("e", 600)), wantNot: []string{"eeee"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chat := func(context.Context, string, []byte) ([]byte, error) { return nil, tc.chatErr }
			p, err := guard.NewGuardModel("safety", map[string]any{"model": "llama-guard"}, chat, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Check(t.Context(), guardInput())
			if err == nil || !strings.Contains(err.Error(), tc.wantHas) {
				t.Fatalf("err = %v, want it to hold %q", err, tc.wantHas)
			}
			assertNoText(t, err, tc.wantNot...)
		})
	}
}
