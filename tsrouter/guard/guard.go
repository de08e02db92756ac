// Package guard is the router's guardrails: providers that look at the
// text of a request (input stage) or of an answer (output stage) and
// return a verdict — allow, flag, transform (replacement text) or block —
// and the engine that runs the operator's providers for one caller and
// combines their verdicts, most severe first. It never logs, records or
// returns a matched value: verdicts carry entity types, counts,
// categories and the provider's name only.
package guard

import (
	"context"
	"time"
)

// Stage is where in the pipeline a provider runs.
type Stage uint8

const (
	// Input is the caller's request, before the tier is admitted.
	Input Stage = iota
	// Output is the serve's answer, before the caller sees it.
	Output
)

func (s Stage) String() string { return [...]string{"input", "output"}[s] }

// Action is a verdict's kind, ordered by severity: with several
// providers the most severe verdict wins.
type Action uint8

const (
	Allow     Action = iota // nothing to do
	Flag                    // recorded only; the text goes on unchanged
	Transform               // the text goes on as the provider rewrote it
	Block                   // the request or answer is refused
)

func (a Action) String() string { return [...]string{"allow", "flag", "transform", "block"}[a] }

// The categories verdicts name. A provider's label that maps to none of
// them is kept as it is.
const (
	CategoryViolence      = "violence"
	CategoryHateSpeech    = "hate_speech"
	CategorySexualContent = "sexual_content"
	CategorySelfHarm      = "self_harm"
	CategoryHarassment    = "harassment"
	CategoryDangerous     = "dangerous"
	CategoryJailbreak     = "jailbreak"
	CategoryPII           = "pii"
	CategoryProfanity     = "profanity"
)

// CategoryProviderError is the category of the block a failing provider
// gives under on_error = fail_closed (Result.Unavailable).
const CategoryProviderError = "provider_error"

// Kind says what a piece of text is, so providers and the operator's
// rules can treat a system prompt, a tool's arguments or a tool's result
// differently from conversation text.
type Kind string

const (
	KindSystem     Kind = "system"
	KindMessage    Kind = "message"
	KindToolArgs   Kind = "tool_arguments"
	KindToolResult Kind = "tool_result"
	KindInput      Kind = "input" // embeddings input, audio transcript
)

// Text is one piece of text of a request or an answer.
type Text struct {
	Role string // "system", "user", "assistant", "tool" ("" when none)
	Kind Kind
	Text string
}

// Content is what a provider checks: the texts of a request (Input) or
// of the conversation and its answer (Output), in order. For the output
// stage, Answer is the index of the first text of the answer: the texts
// before it are the conversation, given for context (a guard model
// classifies the answer in the light of the prompt); providers that only
// rewrite text (pii, rules) rewrite only Texts[Answer:].
type Content struct {
	Stage  Stage
	Texts  []Text
	Answer int
	// Model is the alias the caller asked for ("" for none).
	Model string
}

// Verdict is one provider's answer for one stage.
type Verdict struct {
	Action Action
	// Category is set for Flag and Block (one of the Category constants,
	// or the provider's own label).
	Category string
	// Score is the provider's confidence in [0, 1] (1 when the provider
	// gives none); category_thresholds compare against it.
	Score float64
	// Reason is operator-facing and never holds matched text.
	Reason string
	// Entities counts what was found by type ("email": 2); never values.
	Entities map[string]int
	// Texts are the replacement texts of a Transform, one per text of
	// the Content (unchanged texts included), in the same order.
	Texts []string
	// Message is what a webhook asked the caller to be told on a block
	// (never matched text); "" for none.
	Message string
}

// Provider is one configured guardrail.
type Provider interface {
	// Name is the operator's name for it ([[guardrails.providers]].name).
	Name() string
	// Type is its type: "pii", "rules", "guard_model", "webhook".
	Type() string
	// Check returns the provider's verdict on c. An error is judged by
	// the provider's on_error (fail_open: allow; fail_closed: block).
	Check(ctx context.Context, c *Content) (Verdict, error)
}

// Span is one match in a text: bytes [Start, End) of type Type (an entity
// type such as "email", or a rule's name), with a score in [0, 1].
type Span struct {
	Start, End int
	Type       string
	Score      float64
}

// ChatFunc sends an OpenAI Chat Completions request body to the tier that
// serves alias and returns the serve's reply body (OpenAI Chat JSON). The
// router provides it, so a guard model is reached like any other model
// on this host; the guard package does no routing of its own.
type ChatFunc func(ctx context.Context, alias string, body []byte) ([]byte, error)

// Clock is the time source; tests inject one.
type Clock func() time.Time
