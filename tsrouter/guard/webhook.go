package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Webhook is the "webhook" provider: it POSTs the texts of a request (or
// of a conversation and its answer) to an operator's HTTP endpoint on
// loopback or the tailnet, which answers allow, flag, block (with a
// message for the caller) or modify (replacement texts) — the router's
// counterpart of Tailscale Aperture's pre-request hooks. The protocol is
// README-webhook.md.
type Webhook struct {
	name      string
	url       string
	timeout   time.Duration
	secretEnv string // the variable's name, shown in the admin view
	secret    string // its value, sent as a bearer token and never shown
	maxAnswer int64
	client    *http.Client
}

// webhookMaxMessage bounds a block message shown to callers.
const webhookMaxMessage = 1024

// NewWebhook reads a webhook provider's options: url (required, http or
// https), timeout (default "2s"), secret_env (the name of an environment
// variable whose value is sent as "Authorization: Bearer"; it must be
// set and non-empty) and max_response_bytes (default 1 MiB).
func NewWebhook(name string, opts map[string]any, getenv func(string) string) (Provider, error) {
	what := fmt.Sprintf("webhook %q", name)
	o := newOptions(what, opts)
	w := &Webhook{
		name:      name,
		url:       o.httpURL("url"),
		timeout:   o.duration("timeout", 2*time.Second, false),
		secretEnv: o.string("secret_env", ""),
		maxAnswer: int64(o.nonNegInt("max_response_bytes", 1<<20)),
		client:    newUpstreamClient(),
	}
	if w.maxAnswer == 0 {
		o.fail("max_response_bytes", "must be positive")
	}
	if w.secretEnv != "" {
		if getenv != nil {
			w.secret = getenv(w.secretEnv)
		}
		if w.secret == "" {
			o.fail("secret_env", "environment variable %s is unset or empty", w.secretEnv)
		}
	}
	if err := o.err(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Webhook) Name() string { return w.name }
func (w *Webhook) Type() string { return "webhook" }

// URL and SecretEnv are for the admin view: the secret's variable name,
// never its value.
func (w *Webhook) URL() string       { return w.url }
func (w *Webhook) SecretEnv() string { return w.secretEnv }

// UseTransport makes the provider reach its endpoint through rt (the
// router's tailnet dialer, for a hook on another tailnet node).
func (w *Webhook) UseTransport(rt http.RoundTripper) { w.client.Transport = rt }

// WebhookText is one text in a webhook request.
type WebhookText struct {
	Role string `json:"role"`
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// WebhookRequest is the JSON body POSTed to a webhook.
type WebhookRequest struct {
	Stage    string        `json:"stage"`
	Provider string        `json:"provider"`
	Model    string        `json:"model"`
	Texts    []WebhookText `json:"texts"`
	// AnswerIndex is the index in Texts of the answer's first text; only
	// in the output stage.
	AnswerIndex *int `json:"answer_index,omitempty"`
}

// WebhookAnswer is the JSON body a webhook answers with.
type WebhookAnswer struct {
	Action   string   `json:"action"`
	Message  string   `json:"message,omitempty"`
	Category string   `json:"category,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Texts    []string `json:"texts,omitempty"`
}

// webhookCategory labels a block or flag whose hook named no category.
const webhookCategory = "webhook"

func (w *Webhook) Check(ctx context.Context, c *Content) (Verdict, error) {
	what := fmt.Sprintf("webhook %q", w.name)
	req := WebhookRequest{Stage: c.Stage.String(), Provider: w.name, Model: c.Model, Texts: make([]WebhookText, len(c.Texts))}
	texts := make([]string, len(c.Texts))
	for i, t := range c.Texts {
		req.Texts[i] = WebhookText{Role: t.Role, Kind: string(t.Kind), Text: t.Text}
		texts[i] = t.Text
	}
	if c.Stage == Output {
		answer := c.Answer
		req.AnswerIndex = &answer
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Verdict{}, upstreamErr(what, nil, nil, "encoding request")
	}
	var header http.Header
	if w.secret != "" {
		header = http.Header{"Authorization": {"Bearer " + w.secret}}
	}
	// Nothing a transport says may carry the secret: it is only in a header.
	data, err := postJSON(ctx, w.client, what, w.url, body, header, w.timeout, w.maxAnswer, append(texts, w.secret))
	if err != nil {
		return Verdict{}, err
	}
	var a WebhookAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return Verdict{}, upstreamErr(what, nil, texts, "answer is not a JSON object")
	}
	if len(a.Message) > webhookMaxMessage {
		return Verdict{}, upstreamErr(what, nil, texts, "message longer than %d bytes", webhookMaxMessage)
	}
	// A hook's words reach records and callers; it must not echo what it checked.
	if holdsAny(a.Message, texts) || holdsAny(a.Reason, texts) || holdsAny(a.Category, texts) {
		return Verdict{}, upstreamErr(what, nil, texts, "answer's message, reason or category quotes the checked text")
	}
	switch a.Action {
	case "allow":
		return Verdict{Action: Allow, Score: 1}, nil
	case "flag", "block":
		v := Verdict{Action: Flag, Category: a.Category, Score: 1, Reason: a.Reason, Message: a.Message}
		if a.Action == "block" {
			v.Action = Block
		}
		if v.Category == "" {
			v.Category = webhookCategory
		}
		if v.Reason == "" {
			v.Reason = what + " answered " + a.Action
		}
		return v, nil
	case "modify":
		if len(a.Texts) != len(c.Texts) {
			return Verdict{}, upstreamErr(what, nil, texts, "modify answer has %d texts, want %d", len(a.Texts), len(c.Texts))
		}
		reason := a.Reason
		if reason == "" {
			reason = what + " answered modify"
		}
		return Verdict{Action: Transform, Category: a.Category, Score: 1, Reason: reason, Texts: a.Texts}, nil
	case "":
		return Verdict{}, upstreamErr(what, nil, texts, "answer has no action")
	}
	return Verdict{}, upstreamErr(what, nil, texts, "answer has an unknown action (want allow, flag, block or modify)")
}
