package dialect

import (
	"encoding/json"
	"time"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// anthropicReplyIn is the part of a Messages response the translation
// reads.
type anthropicReplyIn struct {
	Type         string            `json:"type"`
	Content      []json.RawMessage `json:"content"`
	StopReason   json.RawMessage   `json:"stop_reason"`
	StopSequence json.RawMessage   `json:"stop_sequence"`
	Usage        json.RawMessage   `json:"usage"`
}

type chatCompletionOut struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []chatChoiceOut `json:"choices"`
	Usage   openaiUsageOut  `json:"usage"`
}

type chatChoiceOut struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *struct{}      `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
	// StopReason is the stop string that ended the answer, where vLLM
	// reports it (OpenAI has no field for it).
	StopReason *string `json:"stop_reason,omitempty"`
}

type chatMessageOut struct {
	Role    string  `json:"role"`
	Content *string `json:"content"`
	// ReasoningContent is where thinking goes: the key DeepSeek's API,
	// SGLang and older vLLM use, and that OpenAI-dialect agent clients read.
	ReasoningContent string         `json:"reasoning_content,omitempty"`
	ToolCalls        []chatToolCall `json:"tool_calls,omitempty"`
}

type openaiUsageOut struct {
	PromptTokens        int               `json:"prompt_tokens"`
	CompletionTokens    int               `json:"completion_tokens"`
	TotalTokens         int               `json:"total_tokens"`
	PromptTokensDetails *promptDetailsOut `json:"prompt_tokens_details,omitempty"`
}

type promptDetailsOut struct {
	CachedTokens int `json:"cached_tokens"`
}

// AnthropicResponseToOpenAI translates a non-streaming Anthropic Messages
// response into a chat.completion whose model is the caller's string:
// text blocks concatenated into content (null when the reply is only tool
// calls), thinking into reasoning_content, tool_use blocks into tool_calls
// with the input encoded as the arguments string.
func AnthropicResponseToOpenAI(body []byte, model string) ([]byte, error) {
	var r anthropicReplyIn
	if json.Unmarshal(body, &r) != nil || r.Type == "error" || r.Content == nil {
		return nil, ErrUpstreamReply
	}
	var text, reasoning string
	var calls []chatToolCall
	var est estimator
	for _, raw := range r.Content {
		var b anthropicBlock
		if json.Unmarshal(raw, &b) != nil {
			continue
		}
		switch b.Type {
		case "text":
			text += b.Text
		case "thinking":
			reasoning += b.Thinking
		case "tool_use":
			if b.Name == "" {
				continue
			}
			args := []byte("{}")
			if isObject(b.Input) {
				args = compactJSON(b.Input)
			}
			id := b.ID
			if id == "" {
				id = newID("call_")
			}
			calls = append(calls, chatToolCall{ID: id, Type: "function", Function: chatFunction{Name: b.Name, Arguments: string(args)}})
			est.add(b.Name)
			est.addRawJSON(args)
		}
	}
	est.add(text)
	est.add(reasoning)
	msg := chatMessageOut{Role: "assistant", ReasoningContent: reasoning, ToolCalls: calls}
	if text != "" || len(calls) == 0 {
		msg.Content = &text
	}
	u, ok := parseAnthropicUsage(r.Usage)
	if !ok {
		u.output = est.tokens()
	}
	out := chatCompletionOut{
		ID:      newID("chatcmpl-"),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   model,
		Choices: []chatChoiceOut{{Message: msg, FinishReason: openaiFinishReason(str(r.StopReason), len(calls) > 0)}},
		Usage:   u.openai(),
	}
	if seq := str(r.StopSequence); seq != "" && str(r.StopReason) == "stop_sequence" {
		out.Choices[0].StopReason = &seq
	}
	return marshal(&out), nil
}

// openaiFinishReason maps an Anthropic stop_reason (end_turn and
// stop_sequence → stop, max_tokens → length, tool_use → tool_calls). As in
// the other direction, a reply with tool calls is tool_calls unless cut at
// the limit: an Anthropic endpoint in front of vLLM can report a forced
// tool call as end_turn, and OpenAI agent loops key on tool_calls.
func openaiFinishReason(stop string, hasTools bool) string {
	switch stop {
	case "max_tokens", "length", "model_length":
		return "length"
	case "tool_use", "tool_calls", "function_call":
		return "tool_calls"
	}
	if hasTools {
		return "tool_calls"
	}
	return "stop"
}

// anthropicCounts is an Anthropic usage report.
type anthropicCounts struct {
	input, output          int
	cacheRead, cacheCreate int
	hasCacheRead           bool
}

func parseAnthropicUsage(raw []byte) (u anthropicCounts, ok bool) {
	if !isObject(raw) {
		return u, false
	}
	u.merge(raw)
	return u, true
}

// merge takes the counts present in raw, leaving the others: message_delta
// usage repeats some of message_start's and omits others.
func (u *anthropicCounts) merge(raw []byte) {
	it := jsonobj.MemberIter(raw)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		n, isInt := atoi(v)
		if !isInt {
			continue
		}
		switch string(k) {
		case "input_tokens":
			u.input = n
		case "output_tokens":
			u.output = n
		case "cache_read_input_tokens":
			u.cacheRead, u.hasCacheRead = n, true
		case "cache_creation_input_tokens":
			u.cacheCreate = n
		}
	}
}

// openai converts to OpenAI usage, whose prompt_tokens counts the whole
// prompt: Anthropic's input_tokens excludes cache reads and writes.
func (u anthropicCounts) openai() openaiUsageOut {
	o := openaiUsageOut{PromptTokens: u.input + u.cacheRead + u.cacheCreate, CompletionTokens: u.output}
	o.TotalTokens = o.PromptTokens + o.CompletionTokens
	if u.hasCacheRead {
		o.PromptTokensDetails = &promptDetailsOut{CachedTokens: u.cacheRead}
	}
	return o
}
