package guard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// GuardModel is the "guard_model" provider: a safety classifier (Llama
// Guard 3/4, Qwen3Guard-Gen, ShieldGemma) served on this host like any
// other model and reached through the router's ChatFunc. It sends the
// conversation (input stage) or the conversation and its answer (output
// stage) in the classifier's documented format, parses its verdict and
// maps its categories to the router's. Recent identical verdicts are
// cached, so a conversation's growing history and retries cost one call.
type GuardModel struct {
	name      string
	what      string // `guard_model "name"`, for messages
	model     string
	format    guardFormat
	template  string // "chat" or "raw"
	timeout   time.Duration
	maxTokens int
	policy    shieldPolicy // shieldgemma only
	ignored   map[string]bool
	chat      ChatFunc
	cache     *verdictCache
}

// guardFormat is one classifier family's prompt and answer format.
type guardFormat interface {
	// name is the format option's value.
	name() string
	// rawPrompt is the documented prompt text for conv.
	rawPrompt(conv guardConversation, p shieldPolicy) string
	// chatMessages is conv as the chat messages the classifier's own chat
	// template expects, and any chat_template_kwargs it takes.
	chatMessages(conv guardConversation, p shieldPolicy) ([]chatMessage, map[string]any)
	// parse turns the classifier's answer into a verdict and the router
	// categories of every code it named, in order; score is the
	// probability of its first token when the serve gave logprobs, else 1.
	parse(answer string, score float64, p shieldPolicy) (Verdict, []string, error)
	defaultMaxTokens() int
}

// NewGuardModel reads a guard_model provider's options:
//
//	model       the alias of the classifier (required); reached via chat
//	format      "llama_guard" (default) | "qwen3_guard" | "shieldgemma"
//	template    "chat" (default: the serve applies the classifier's own
//	            chat template, as vLLM does) | "raw" (the router writes
//	            the documented prompt into one user message, for serves
//	            without the classifier's template)
//	policy      shieldgemma only: "dangerous" (default) | "harassment" |
//	            "hate_speech" | "sexual_content"; policy_text overrides
//	            its wording (one policy per provider)
//	timeout     default "5s"
//	max_tokens  default 32 (llama_guard), 64 (qwen3_guard), 8 (shieldgemma)
//	cache_size  recent verdicts kept, default 1024; 0 turns the cache off
//	cache_ttl   how long a cached verdict holds, default "10m"; "0s": forever
//	ignore_categories  router categories or kept labels (as mapped, e.g.
//	            "specialized_advice", "elections", "S15") that never flag
//	            or block; the first category not ignored names the verdict
func NewGuardModel(name string, opts map[string]any, chat ChatFunc, now Clock) (Provider, error) {
	what := fmt.Sprintf("guard_model %q", name)
	o := newOptions(what, opts)
	g := &GuardModel{name: name, what: what, chat: chat}
	g.model = o.string("model", "")
	if g.model == "" {
		o.fail("model", "required: the alias of the guard model")
	}
	switch f := o.oneOf("format", "llama_guard", "qwen3_guard", "shieldgemma"); f {
	case "llama_guard":
		g.format = llamaGuard{}
	case "qwen3_guard":
		g.format = qwen3Guard{}
	case "shieldgemma":
		g.format = shieldGemma{}
	}
	g.template = o.oneOf("template", "chat", "raw")
	if _, isShield := g.format.(shieldGemma); isShield || o.has("policy") || o.has("policy_text") {
		if !isShield {
			o.fail("policy", "only for format \"shieldgemma\"")
		}
		pol, ok := shieldPolicies[o.string("policy", "dangerous")]
		if !ok {
			o.fail("policy", "want one of \"dangerous\", \"harassment\", \"hate_speech\", \"sexual_content\"")
		}
		if t := o.string("policy_text", ""); t != "" {
			pol.prompt, pol.response = t, t
		}
		g.policy = pol
	}
	g.timeout = o.duration("timeout", 5*time.Second, false)
	g.maxTokens = o.nonNegInt("max_tokens", g.format.defaultMaxTokens())
	if g.maxTokens == 0 {
		o.fail("max_tokens", "must be positive")
	}
	for _, c := range o.strings("ignore_categories") {
		if g.ignored == nil {
			g.ignored = map[string]bool{}
		}
		g.ignored[c] = true
	}
	size := o.nonNegInt("cache_size", 1024)
	ttl := o.duration("cache_ttl", 10*time.Minute, true)
	if err := o.err(); err != nil {
		return nil, err
	}
	if chat == nil {
		return nil, fmt.Errorf("%s: no way to reach models (nil ChatFunc)", what)
	}
	if now == nil {
		now = time.Now
	}
	if size > 0 {
		g.cache = newVerdictCache(size, ttl, now)
	}
	return g, nil
}

func (g *GuardModel) Name() string { return g.name }
func (g *GuardModel) Type() string { return "guard_model" }

// Model and Format are for the admin view.
func (g *GuardModel) Model() string  { return g.model }
func (g *GuardModel) Format() string { return g.format.name() }

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatRequest struct {
	Model              string         `json:"model"`
	Messages           []chatMessage  `json:"messages"`
	MaxTokens          int            `json:"max_tokens"`
	Temperature        float64        `json:"temperature"`
	Stream             bool           `json:"stream"`
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs,omitempty"`
}

type chatReply struct {
	Choices []struct {
		Message *struct {
			Content *string `json:"content"`
		} `json:"message"`
		Logprobs *struct {
			Content []struct {
				Logprob float64 `json:"logprob"`
			} `json:"content"`
		} `json:"logprobs"`
	} `json:"choices"`
}

func (g *GuardModel) Check(ctx context.Context, c *Content) (Verdict, error) {
	conv := conversationOf(c)
	if len(conv.turns) == 0 || (c.Stage == Output && !conv.hasAnswer()) {
		// Nothing to classify (an empty prompt, an answer of tool calls
		// without text): no call.
		return Verdict{Action: Allow, Score: 1}, nil
	}
	var key cacheKey
	if g.cache != nil {
		key = contentKey(c)
		if v, ok := g.cache.get(key); ok {
			return v, nil
		}
	}
	v, err := g.classify(ctx, c, conv)
	if err != nil {
		return Verdict{}, err
	}
	if g.cache != nil {
		g.cache.put(key, v)
	}
	return v, nil
}

func (g *GuardModel) classify(ctx context.Context, c *Content, conv guardConversation) (Verdict, error) {
	texts := make([]string, len(c.Texts))
	for i, t := range c.Texts {
		texts[i] = t.Text
	}
	req := chatRequest{Model: g.model, MaxTokens: g.maxTokens, Temperature: 0}
	if g.template == "raw" {
		req.Messages = []chatMessage{{Role: "user", Content: g.format.rawPrompt(conv, g.policy)}}
	} else {
		req.Messages, req.ChatTemplateKwargs = g.format.chatMessages(conv, g.policy)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Verdict{}, upstreamErr(g.what, nil, nil, "encoding request")
	}
	cctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	data, err := g.chat(cctx, g.model, body)
	if err != nil {
		if errors.Is(cctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			return Verdict{}, upstreamErr(g.what, context.DeadlineExceeded, texts, "model %q gave no verdict within %s", g.model, g.timeout)
		}
		return Verdict{}, upstreamErr(g.what, err, texts, "calling model %q", g.model)
	}
	var reply chatReply
	if err := json.Unmarshal(data, &reply); err != nil {
		return Verdict{}, upstreamErr(g.what, nil, texts, "model %q answered something other than OpenAI chat JSON", g.model)
	}
	if len(reply.Choices) == 0 || reply.Choices[0].Message == nil || reply.Choices[0].Message.Content == nil {
		return Verdict{}, upstreamErr(g.what, nil, texts, "model %q answered no message", g.model)
	}
	score := 1.0
	if lp := reply.Choices[0].Logprobs; lp != nil && len(lp.Content) > 0 {
		if p := math.Exp(lp.Content[0].Logprob); p > 0 && p <= 1 {
			score = p
		}
	}
	v, cats, err := g.format.parse(*reply.Choices[0].Message.Content, score, g.policy)
	if err != nil {
		// The classifier's answer is never quoted: it may echo the text.
		return Verdict{}, upstreamErr(g.what, nil, texts, "model %q: %v", g.model, err)
	}
	return g.ignore(v, cats), nil
}

// ignore drops the categories the operator ignores: the verdict's
// category becomes the first one left, and a verdict that named only
// ignored categories allows. (A category threshold in the engine cannot
// do this: it sees only the first category.)
func (g *GuardModel) ignore(v Verdict, cats []string) Verdict {
	if len(g.ignored) == 0 || len(cats) == 0 || v.Action == Allow {
		return v
	}
	for _, c := range cats {
		if !g.ignored[c] {
			v.Category = c
			return v
		}
	}
	return Verdict{Action: Allow, Score: v.Score, Reason: v.Reason + "; only ignored categories"}
}

// guardConversation is a Content as a classifier sees it: turns of "user"
// (system, user and tool texts) and "assistant", consecutive texts of one
// role merged, as the classifiers' templates require alternating roles.
// In the output stage the turns from answer on are the answer.
type guardConversation struct {
	stage  Stage
	turns  []chatMessage
	answer int // index in turns of the first answer turn; len(turns) for none
}

func (c guardConversation) hasAnswer() bool { return c.answer < len(c.turns) }

func conversationOf(c *Content) guardConversation {
	conv := guardConversation{stage: c.Stage}
	conv.answer = -1
	for i, t := range c.Texts {
		inAnswer := c.Stage == Output && i >= c.Answer
		if inAnswer && conv.answer < 0 {
			conv.answer = len(conv.turns)
		}
		if t.Text == "" {
			continue
		}
		role := "user"
		if t.Role == "assistant" || inAnswer {
			role = "assistant"
		}
		n := len(conv.turns)
		// Merge into the previous turn of the same role, but never join
		// the answer to the conversation's last assistant turn.
		if n > 0 && conv.turns[n-1].Role == role && !(inAnswer && n == conv.answer) {
			conv.turns[n-1].Content += "\n\n" + t.Text
			continue
		}
		conv.turns = append(conv.turns, chatMessage{Role: role, Content: t.Text})
	}
	if conv.answer < 0 || conv.answer > len(conv.turns) {
		conv.answer = len(conv.turns)
	}
	// The answer must follow a user turn to alternate.
	if conv.answer > 0 && conv.answer < len(conv.turns) && conv.turns[conv.answer-1].Role == "assistant" {
		conv.turns = append(conv.turns[:conv.answer], append([]chatMessage{{Role: "user", Content: ""}}, conv.turns[conv.answer:]...)...)
		conv.answer++
	}
	// And the conversation must open with a user turn.
	if len(conv.turns) > 0 && conv.turns[0].Role == "assistant" {
		conv.turns = append([]chatMessage{{Role: "user", Content: ""}}, conv.turns...)
		conv.answer++
	}
	return conv
}

// lastUser is the text of the last user turn before the answer (output)
// or of all user turns (input): a single-turn classifier's question.
func (c guardConversation) question() string {
	if c.stage == Output {
		for i := c.answer - 1; i >= 0; i-- {
			if c.turns[i].Role == "user" {
				return c.turns[i].Content
			}
		}
		return ""
	}
	var parts []string
	for _, t := range c.turns {
		if t.Role == "user" {
			parts = append(parts, t.Content)
		}
	}
	return strings.Join(parts, "\n\n")
}

// response is the answer's text (output stage).
func (c guardConversation) response() string {
	var parts []string
	for _, t := range c.turns[c.answer:] {
		parts = append(parts, t.Content)
	}
	return strings.Join(parts, "\n\n")
}

// slugLabel keeps a classifier's unknown label as a category: lower case,
// words joined by underscores ("Code Interpreter Abuse" →
// "code_interpreter_abuse").
func slugLabel(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(strings.TrimSpace(s)) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if under && b.Len() > 0 {
				b.WriteByte('_')
			}
			under = false
			b.WriteRune(r)
		default:
			under = true
		}
	}
	return b.String()
}
