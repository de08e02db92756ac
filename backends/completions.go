package backends

import (
	"context"
	"strings"
)

// The legacy text completions API (POST /v1/completions), which vLLM and
// SGLang serve beside chat: fill-in-the-middle autocomplete and evaluation
// harnesses speak it. Only OpenAI-dialect tiers have it; the body is the
// caller's, edited like a chat body (model, output cap, overrides), and
// the reply and stream have the chat ones' framing (choices, usage,
// finish_reason, [DONE]), so the same relay and checks apply.

// completionsEndpoint is the tier's text completions endpoint: the chat
// endpoint's sibling under the same /v1 base.
func (t *Tier) completionsEndpoint() endpoint {
	e := t.endpoint()
	e.url = strings.TrimSuffix(t.chatURL, "/chat/completions") + "/completions"
	return e
}

// HasCompletions reports whether the tier's serve has the text
// completions endpoint (OpenAI-dialect serves do; Anthropic ones do not).
func (t *Tier) HasCompletions() bool { return t.Dialect == "openai" }

// CompleteText sends a non-streaming text completion request and returns
// the serve's whole reply body, untouched.
func (t *Tier) CompleteText(ctx context.Context, body []byte) (*Reply, error) {
	return t.completionsEndpoint().complete(ctx, body)
}

// OpenTextStream sends a streaming text completion request and reads up
// to the first data event, with OpenStream's checks.
func (t *Tier) OpenTextStream(ctx context.Context, body []byte) (*Stream, error) {
	return t.openStream(ctx, t.completionsEndpoint(), body)
}

// PromptEstimate is the router's size estimate of prompt texts read as one
// prompt, without a tokenizer: the larger of their whitespace-separated
// words and their UTF-8 bytes / 4, as for chat messages.
func PromptEstimate(texts ...string) int {
	words, size := 0, 0
	for _, s := range texts {
		words += len(strings.Fields(s))
		size += len(s)
	}
	return max(words, size/4)
}

// OverContextTokens reports whether a prompt of the estimated size exceeds
// the tier's context_limit.
func (t *Tier) OverContextTokens(estimate int) bool {
	return t.ContextLimit > 0 && estimate > t.ContextLimit
}
