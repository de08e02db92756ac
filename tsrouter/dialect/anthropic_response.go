package dialect

import (
	"encoding/json"
	"errors"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// ErrUpstreamReply is returned for a serve reply that cannot be translated:
// not a completion, an error object, or no choices. The handler treats it
// as an upstream failure (500 internal_error before the first byte).
var ErrUpstreamReply = errors.New("dialect: serve reply is not a usable completion")

// chatCompletion is the part of an OpenAI chat.completion the translation
// reads; members stay raw so an odd type skips rather than fails.
type chatCompletion struct {
	Object  string          `json:"object"`
	Error   json.RawMessage `json:"error"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Content          json.RawMessage   `json:"content"`
			Reasoning        json.RawMessage   `json:"reasoning"`
			ReasoningContent json.RawMessage   `json:"reasoning_content"`
			ToolCalls        []json.RawMessage `json:"tool_calls"`
		} `json:"message"`
		FinishReason json.RawMessage `json:"finish_reason"`
		// vLLM reports the stop string that ended generation here (or a
		// token id); SGLang in matched_stop.
		StopReason  json.RawMessage `json:"stop_reason"`
		MatchedStop json.RawMessage `json:"matched_stop"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

type chatToolCallIn struct {
	ID       string `json:"id"`
	Function struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	} `json:"function"`
}

// anthropicReply is the non-streaming Messages response; field order is
// the wire order.
type anthropicReply struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Role         string         `json:"role"`
	Model        string         `json:"model"`
	Content      []any          `json:"content"`
	StopReason   string         `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        anthropicUsage `json:"usage"`
}

type anthropicUsage struct {
	InputTokens          int  `json:"input_tokens"`
	OutputTokens         int  `json:"output_tokens"`
	CacheReadInputTokens *int `json:"cache_read_input_tokens,omitempty"`
}

type textBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// thinkingBlock carries an empty signature: the field is required by the
// SDK types, and there is nothing a router could sign. Clients that send
// such blocks back reach a serve through AnthropicToOpenAI, which ignores
// signatures.
type thinkingBlock struct {
	Type      string `json:"type"`
	Thinking  string `json:"thinking"`
	Signature string `json:"signature"`
}

type toolUseBlock struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// OpenAIResponseToAnthropic translates a non-streaming chat.completion into
// an Anthropic Messages response whose model is the caller's string. The
// text is copied exactly. A reply without usage gets estimated output
// tokens and zero input tokens (the serves always send usage).
func OpenAIResponseToAnthropic(body []byte, model string) ([]byte, error) {
	var cc chatCompletion
	if json.Unmarshal(body, &cc) != nil || len(cc.Error) > 0 && string(cc.Error) != "null" || cc.Object == "error" || len(cc.Choices) == 0 {
		return nil, ErrUpstreamReply
	}
	ch := cc.Choices[0]
	for _, c := range cc.Choices {
		if c.Index == 0 {
			ch = c
			break
		}
	}
	msg := ch.Message
	r := anthropicReply{ID: newID("msg_"), Type: "message", Role: "assistant", Model: model}
	var est estimator
	reasoning := str(msg.ReasoningContent)
	if reasoning == "" {
		reasoning = str(msg.Reasoning)
	}
	if reasoning != "" {
		r.Content = append(r.Content, thinkingBlock{Type: "thinking", Thinking: reasoning})
		est.add(reasoning)
	}
	if text := messageText(msg.Content); text != "" {
		r.Content = append(r.Content, textBlock{Type: "text", Text: text})
		est.add(text)
	}
	tools := 0
	for _, raw := range msg.ToolCalls {
		var tc chatToolCallIn
		if json.Unmarshal(raw, &tc) != nil || tc.Function.Name == "" {
			continue
		}
		id := tc.ID
		if id == "" {
			id = newID("toolu_")
		}
		input := toolInput(tc.Function.Arguments)
		est.add(tc.Function.Name)
		est.addRawJSON(input)
		r.Content = append(r.Content, toolUseBlock{Type: "tool_use", ID: id, Name: tc.Function.Name, Input: input})
		tools++
	}
	if len(r.Content) == 0 {
		r.Content = append(r.Content, textBlock{Type: "text", Text: ""})
	}
	stop := matchedStop(ch.StopReason, ch.MatchedStop)
	r.StopReason = anthropicStopReason(str(ch.FinishReason), stop != "", tools > 0)
	if r.StopReason == "stop_sequence" {
		r.StopSequence = &stop
	}
	u, ok := parseUsage(cc.Usage)
	if !ok {
		u.completion = est.tokens()
	}
	r.Usage = u.anthropic()
	return marshal(&r), nil
}

// messageText returns a message's content: a string, or the text parts of a
// parts array concatenated (some serves answer with parts).
func messageText(raw json.RawMessage) string {
	if isString(raw) {
		return str(raw)
	}
	var text string
	it := jsonobj.ElementIter(raw)
	for el, ok := it.Element(); ok; el, ok = it.Element() {
		var p struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(el, &p) == nil && p.Type == "text" {
			text += p.Text
		}
	}
	return text
}

// toolInput turns tool-call arguments into an Anthropic input object. The
// arguments are a JSON string holding an object; some serves put the object
// itself. Anything that is not an object — truncated JSON at max_tokens, a
// bare value — is kept, raw, as {"_unparsed_arguments": "..."} so nothing
// the model produced is lost and the input stays an object.
func toolInput(raw json.RawMessage) json.RawMessage {
	if isObject(raw) {
		return compactJSON(raw)
	}
	args := str(raw)
	if args == "" {
		return json.RawMessage("{}")
	}
	if b := []byte(args); jsonobj.Valid(b) && isObject(b[jsonobj.SkipSpace(b, 0):]) {
		return compactJSON(b)
	}
	return append(appendString([]byte(`{"_unparsed_arguments":`), args), '}')
}

// matchedStop returns the stop string a serve says ended generation: vLLM's
// stop_reason or SGLang's matched_stop when it is a string (a number there
// is a stop token id, which is an ordinary end of turn).
func matchedStop(stopReason, matched json.RawMessage) string {
	if s := str(stopReason); s != "" {
		return s
	}
	return str(matched)
}

// anthropicStopReason maps an OpenAI finish_reason (stop → end_turn,
// length → max_tokens, tool_calls → tool_use). A serve
// that stopped on a stop string it names gets stop_sequence. vLLM reports
// "stop" for forced (required/named) tool calls, so a reply that ends in
// tool calls is tool_use unless it was cut by the length limit: Anthropic
// clients run tools only on stop_reason tool_use.
func anthropicStopReason(finish string, stopMatched, hasTools bool) string {
	switch finish {
	case "length", "max_tokens", "model_length":
		return "max_tokens"
	case "tool_calls", "tool_use", "function_call":
		return "tool_use"
	case "stop_sequence":
		return "stop_sequence"
	}
	if hasTools {
		return "tool_use"
	}
	if finish == "stop" && stopMatched {
		return "stop_sequence"
	}
	return "end_turn"
}

// usageCounts is a serve's usage report in OpenAI terms.
type usageCounts struct {
	prompt, completion int
	cached             int
	hasCached          bool
}

// parseUsage reads {prompt_tokens, completion_tokens,
// prompt_tokens_details:{cached_tokens}}; ok is false for null or absent.
func parseUsage(raw []byte) (u usageCounts, ok bool) {
	if !isObject(raw) {
		return u, false
	}
	it := jsonobj.MemberIter(raw)
	for k, v, more := it.Member(); more; k, v, more = it.Member() {
		switch string(k) {
		case "prompt_tokens":
			u.prompt, _ = atoi(v)
		case "completion_tokens":
			u.completion, _ = atoi(v)
		case "prompt_tokens_details":
			d := jsonobj.MemberIter(v)
			for k, v, more := d.Member(); more; k, v, more = d.Member() {
				if string(k) == "cached_tokens" {
					u.cached, u.hasCached = atoi(v)
				}
			}
		}
	}
	return u, true
}

// anthropic converts to Anthropic usage. OpenAI's prompt_tokens includes
// cached tokens; Anthropic's input_tokens excludes cache reads (clients add
// input + cache_read + cache_creation for the context size), so the cached
// part moves to cache_read_input_tokens instead of being counted twice. A
// serve that reports no cache figure gets none, not a zero.
func (u usageCounts) anthropic() anthropicUsage {
	a := anthropicUsage{InputTokens: u.prompt, OutputTokens: u.completion}
	if u.hasCached {
		cached := min(u.cached, u.prompt)
		a.InputTokens -= cached
		a.CacheReadInputTokens = &cached
	}
	return a
}
