package dialect

import (
	"encoding/json"
	"strconv"
	"strings"
)

// RequestError is a request the caller must fix. The handler answers it
// with 400 invalid_request_error and Message, in the caller's envelope.
type RequestError struct {
	Message string
}

func (e *RequestError) Error() string { return e.Message }

// ThinkingStyle says how an Anthropic "thinking" request is expressed to an
// OpenAI-dialect serve, which has no single field for it.
type ThinkingStyle uint8

const (
	// ThinkingTemplateKwargs (the default) sets chat_template_kwargs
	// {"enable_thinking":B,"thinking":B}: enable_thinking is what the
	// Qwen3 and GLM templates read, thinking what DeepSeek-V3.1's reads;
	// templates ignore the key they do not use (and vLLM drops kwargs its
	// template does not mention). budget_tokens has no counterpart there.
	ThinkingTemplateKwargs ThinkingStyle = iota
	// ThinkingReasoningEffort sets reasoning_effort from budget_tokens
	// (< 4096 low, < 16384 medium, else high), for serves whose template
	// reads it (gpt-oss). "disabled" sends nothing: effort has no "off".
	ThinkingReasoningEffort
	// ThinkingOmit drops the thinking request.
	ThinkingOmit
)

// ToOpenAIOptions adjusts AnthropicToOpenAI.
type ToOpenAIOptions struct {
	// Model, if set, is written as the upstream model instead of the
	// caller's string (the handler may also set it afterwards).
	Model string
	// Thinking selects how "thinking" is expressed (see ThinkingStyle).
	Thinking ThinkingStyle
}

// RequestInfo is what the response side of a translated request needs to
// know about it, and what the handler's gates look at.
type RequestInfo struct {
	// Model is the caller's model string exactly as sent ("claude" for an
	// Anthropic request without one, "chat" for an OpenAI one): replies
	// echo it.
	Model string
	// Stream is whether the caller asked for a stream.
	Stream bool
	// IncludeUsage is whether an OpenAI caller asked for the usage chunk
	// (stream_options.include_usage).
	IncludeUsage bool
	// MaxTokens is the caller's output cap (0 if it sent none).
	MaxTokens int
	// InputTokens is the estimated prompt size (see CountTokens): the
	// Anthropic message_start must carry a number before the serve
	// reports the real one.
	InputTokens int
	// HasTools is whether at least one tool definition was forwarded.
	HasTools bool
	// ToolStructure is whether the request carries any tool structure
	// (tools, tool_choice, tool calls or results): the tier's tool_support
	// gate looks at it.
	ToolStructure bool
	// Images counts the image blocks forwarded.
	Images int
	// Thinking is whether the caller asked for extended thinking.
	Thinking bool
	// ToolOrigins maps the serve-side name of each function that stands
	// for a Responses namespace member or custom tool to what it stands
	// for (nil when there is none), so replies name the call as the
	// caller declared it.
	ToolOrigins map[string]ToolOrigin `json:",omitempty"`
	// DroppedTools are the hosted tool types removed from a Responses
	// request (in order of first appearance), for the warning header and
	// the record.
	DroppedTools []string `json:",omitempty"`
}

// anthropicRequest keeps every member raw: a member of the wrong type is
// skipped where it is read, instead of failing the whole decode.
type anthropicRequest struct {
	Model         json.RawMessage `json:"model"`
	MaxTokens     json.RawMessage `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      json.RawMessage `json:"messages"`
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	StopSequences json.RawMessage `json:"stop_sequences"`
	Temperature   json.RawMessage `json:"temperature"`
	TopP          json.RawMessage `json:"top_p"`
	TopK          json.RawMessage `json:"top_k"`
	Stream        json.RawMessage `json:"stream"`
	Metadata      json.RawMessage `json:"metadata"`
	Thinking      json.RawMessage `json:"thinking"`
	// Thread asks for server-side conversation state (the SDK tool
	// runner's default): refused, see errThread.
	Thread json.RawMessage `json:"thread"`
}

// errThread refuses server-side message threads. The router and the
// serves keep no conversation: a "continue" turn carries only the new
// messages, so relaying it would hand the serve a tool_result without its
// tool_use and tools. The SDK's tool runner sends the whole history with
// thread: false.
var errThread = &RequestError{Message: "thread: this endpoint keeps no conversation state; send the whole conversation in messages (with the SDK tool runner, set thread: false)"}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// anthropicBlock is any content block; Type says which fields matter.
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	Thinking  string          `json:"thinking"`
	Source    json.RawMessage `json:"source"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
}

type anthropicSource struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
}

// chatRequest is the OpenAI body written upstream; field order is the wire
// order.
type chatRequest struct {
	Model                string          `json:"model"`
	Messages             []chatMessage   `json:"messages"`
	MaxTokens            int             `json:"max_tokens,omitempty"`
	Stream               bool            `json:"stream"`
	StreamOptions        *streamOptions  `json:"stream_options,omitempty"`
	Temperature          json.RawMessage `json:"temperature,omitempty"`
	TopP                 json.RawMessage `json:"top_p,omitempty"`
	TopK                 json.RawMessage `json:"top_k,omitempty"`
	Stop                 []string        `json:"stop,omitempty"`
	Tools                []chatTool      `json:"tools,omitempty"`
	ToolChoice           any             `json:"tool_choice,omitempty"`
	ParallelToolCalls    *bool           `json:"parallel_tool_calls,omitempty"`
	User                 string          `json:"user,omitempty"`
	ChatTemplateKwargs   *templateKwargs `json:"chat_template_kwargs,omitempty"`
	ReasoningEffort      string          `json:"reasoning_effort,omitempty"`
	ContinueFinalMessage bool            `json:"continue_final_message,omitempty"`
	AddGenerationPrompt  *bool           `json:"add_generation_prompt,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type templateKwargs struct {
	EnableThinking bool `json:"enable_thinking"`
	Thinking       bool `json:"thinking"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // string, []chatPart, or nil (null)
	// ReasoningContent carries earlier thinking back to the serve: the
	// Qwen3/GLM/DeepSeek templates read this key on assistant turns, and
	// SGLang declares it.
	ReasoningContent string         `json:"reasoning_content,omitempty"`
	ToolCalls        []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string         `json:"tool_call_id,omitempty"`
}

type chatPart struct {
	Type     string    `json:"type"`
	Text     *string   `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL string `json:"url"`
}

type chatToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatTool struct {
	Type     string      `json:"type"`
	Function chatToolDef `json:"function"`
}

type chatToolDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict,omitempty"`
}

type namedToolChoice struct {
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

// emptySchema stands in for a tool without input_schema: OpenAI serves
// expect parameters to be an object schema.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

// AnthropicToOpenAI translates an Anthropic Messages request body into an
// OpenAI Chat Completions body. Only max_tokens (required, a positive
// integer) and messages (required, an array) are enforced, as
// *RequestError; every other malformed member, message or block is
// skipped. See doc.go for the full mapping.
func AnthropicToOpenAI(body []byte, opts ToOpenAIOptions) (out []byte, info RequestInfo, err error) {
	var req anthropicRequest
	if err := decodeObject(body, &req); err != nil {
		return nil, RequestInfo{}, err
	}
	if t := string(req.Thread); t != "" && t != "null" && t != "false" {
		return nil, RequestInfo{}, errThread
	}
	if len(req.MaxTokens) == 0 || string(req.MaxTokens) == "null" {
		return nil, RequestInfo{}, &RequestError{Message: "max_tokens: field required"}
	}
	maxTokens, perr := strconv.Atoi(string(req.MaxTokens))
	if perr != nil || maxTokens < 1 {
		return nil, RequestInfo{}, &RequestError{Message: "max_tokens: Input should be a positive integer"}
	}
	c, err := convertAnthropic(&req, opts)
	if err != nil {
		return nil, RequestInfo{}, err
	}
	c.out.MaxTokens = maxTokens
	c.info.MaxTokens = maxTokens
	c.info.InputTokens = c.est.tokens()
	return marshal(&c.out), c.info, nil
}

// anthropicConverter builds the OpenAI body and the estimate together, so
// count_tokens and the real translation cannot disagree.
type anthropicConverter struct {
	out  chatRequest
	info RequestInfo
	est  estimator
}

func convertAnthropic(req *anthropicRequest, opts ToOpenAIOptions) (*anthropicConverter, error) {
	var raw []json.RawMessage
	if json.Unmarshal(req.Messages, &raw) != nil {
		return nil, &RequestError{Message: "messages: field required"}
	}
	c := &anthropicConverter{}
	c.info.Model = str(req.Model)
	if c.info.Model == "" {
		c.info.Model = "claude"
	}
	c.out.Model = c.info.Model
	if opts.Model != "" {
		c.out.Model = opts.Model
	}
	c.out.Messages = make([]chatMessage, 0, len(raw)+1)
	c.system(req.System)
	for i, r := range raw {
		var m anthropicMessage
		if json.Unmarshal(r, &m) != nil {
			continue
		}
		blocks := contentBlocks(m.Content)
		switch m.Role {
		case "user":
			c.userTurn(blocks)
		case "assistant":
			c.assistantTurn(blocks, i == len(raw)-1)
		}
	}
	c.tools(req.Tools, req.ToolChoice)
	c.sampling(req)
	c.thinking(req.Thinking, opts.Thinking)
	return c, nil
}

// system turns the system prompt (a string or text blocks) into a leading
// system message. Blocks are joined with "\n", as vLLM itself flattens text
// parts for templates that want a string, which most system slots do.
func (c *anthropicConverter) system(raw json.RawMessage) {
	var texts []string
	for _, b := range contentBlocks(raw) {
		if b.Type == "text" && b.Text != "" {
			texts = append(texts, b.Text)
			c.est.add(b.Text)
		}
	}
	if len(texts) > 0 {
		c.out.Messages = append(c.out.Messages, chatMessage{Role: "system", Content: strings.Join(texts, "\n")})
	}
}

// contentBlocks reads content that is either a string (one text block) or an
// array of blocks; blocks that do not decode are skipped.
func contentBlocks(raw json.RawMessage) []anthropicBlock {
	if isString(raw) {
		return []anthropicBlock{{Type: "text", Text: str(raw)}}
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	blocks := make([]anthropicBlock, 0, len(items))
	for _, it := range items {
		var b anthropicBlock
		if json.Unmarshal(it, &b) == nil && b.Type != "" {
			blocks = append(blocks, b)
		}
	}
	return blocks
}

// userTurn emits the turn's tool results first, as role:"tool" messages —
// OpenAI wants them right after the assistant's tool_calls — then one user
// message with the rest. Images inside tool results move into that user
// message: OpenAI tool messages carry text only.
func (c *anthropicConverter) userTurn(blocks []anthropicBlock) {
	var parts, resultImages []chatPart
	for _, b := range blocks {
		switch b.Type {
		case "text":
			if b.Text != "" {
				parts = append(parts, textPart(b.Text))
				c.est.add(b.Text)
			}
		case "image":
			if p, ok := imagePart(b.Source); ok {
				parts = append(parts, p)
				c.info.Images++
			}
		case "document":
			if t, ok := documentText(b.Source); ok {
				parts = append(parts, textPart(t))
				c.est.add(t)
			}
		case "tool_result":
			if b.ToolUseID == "" {
				continue
			}
			c.info.ToolStructure = true
			text, images := c.toolResult(b.Content)
			if b.IsError {
				// OpenAI has no error flag on tool messages; the model
				// still needs to know the call failed.
				if text == "" {
					text = "Error"
				} else {
					text = "Error: " + text
				}
			}
			c.out.Messages = append(c.out.Messages, chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: text})
			resultImages = append(resultImages, images...)
		}
	}
	parts = append(resultImages, parts...)
	if len(parts) > 0 {
		c.out.Messages = append(c.out.Messages, chatMessage{Role: "user", Content: partsContent(parts)})
	}
}

// toolResult flattens a tool_result's content (a string or blocks) to text,
// returning its images separately.
func (c *anthropicConverter) toolResult(raw json.RawMessage) (string, []chatPart) {
	if isString(raw) {
		s := str(raw)
		c.est.add(s)
		return s, nil
	}
	var texts []string
	var images []chatPart
	for _, b := range contentBlocks(raw) {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
			c.est.add(b.Text)
		case "image":
			if p, ok := imagePart(b.Source); ok {
				images = append(images, p)
				c.info.Images++
			}
		case "document":
			if t, ok := documentText(b.Source); ok {
				texts = append(texts, t)
				c.est.add(t)
			}
		}
	}
	return strings.Join(texts, "\n"), images
}

// assistantTurn folds text, thinking and tool_use blocks into one assistant
// message. Thinking goes to reasoning_content (see chatMessage);
// redacted_thinking is opaque ciphertext no open model can use, so it is
// dropped. A final assistant turn without tool calls is a prefill: the
// serve is told to continue it rather than start a new turn.
func (c *anthropicConverter) assistantTurn(blocks []anthropicBlock, last bool) {
	var texts, reasoning []string
	var calls []chatToolCall
	for _, b := range blocks {
		switch b.Type {
		case "text":
			if b.Text != "" {
				texts = append(texts, b.Text)
				c.est.add(b.Text)
			}
		case "thinking":
			if b.Thinking != "" {
				reasoning = append(reasoning, b.Thinking)
				c.est.add(b.Thinking)
			}
		case "tool_use":
			if b.Name == "" {
				continue
			}
			c.info.ToolStructure = true
			args := []byte("{}")
			if isObject(b.Input) {
				args = compactJSON(b.Input)
			}
			c.est.add(b.Name)
			c.est.addRawJSON(args)
			id := b.ID
			if id == "" {
				id = newID("toolu_")
			}
			calls = append(calls, chatToolCall{ID: id, Type: "function", Function: chatFunction{Name: b.Name, Arguments: string(args)}})
		}
	}
	if len(texts) == 0 && len(calls) == 0 && len(reasoning) == 0 {
		return
	}
	m := chatMessage{Role: "assistant", ToolCalls: calls, ReasoningContent: strings.Join(reasoning, "\n")}
	switch {
	case len(texts) > 0:
		m.Content = strings.Join(texts, "\n")
	case len(calls) == 0:
		m.Content = ""
	}
	c.out.Messages = append(c.out.Messages, m)
	if last && len(calls) == 0 && len(texts) > 0 {
		c.out.ContinueFinalMessage = true
		c.out.AddGenerationPrompt = new(false)
	}
}

func textPart(s string) chatPart { return chatPart{Type: "text", Text: &s} }

// imagePart maps an image source: base64 data becomes a data: URL, a url
// source is passed as is; file references (the Files API) cannot be
// resolved by a serve and are skipped.
func imagePart(raw json.RawMessage) (chatPart, bool) {
	var s anthropicSource
	if json.Unmarshal(raw, &s) != nil {
		return chatPart{}, false
	}
	var url string
	switch s.Type {
	case "base64":
		if s.Data == "" || s.MediaType == "" {
			return chatPart{}, false
		}
		url = "data:" + s.MediaType + ";base64," + s.Data
	case "url":
		if s.URL == "" {
			return chatPart{}, false
		}
		url = s.URL
	default:
		return chatPart{}, false
	}
	return chatPart{Type: "image_url", ImageURL: &imageURL{URL: url}}, true
}

// documentText returns the text of a plain-text document block; PDFs and
// other sources have no OpenAI Chat counterpart a serve accepts.
func documentText(raw json.RawMessage) (string, bool) {
	var s anthropicSource
	if json.Unmarshal(raw, &s) != nil || s.Type != "text" || s.Data == "" {
		return "", false
	}
	return s.Data, true
}

// partsContent returns text-only content as one string (joined with "\n",
// as vLLM flattens parts for string templates) and anything with an image
// as a parts array.
func partsContent(parts []chatPart) any {
	texts := make([]string, 0, len(parts))
	for _, p := range parts {
		if p.Type != "text" {
			return parts
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n")
}

type anthropicTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	InputSchema json.RawMessage `json:"input_schema"`
	Strict      *bool           `json:"strict"`
}

type anthropicToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
}

// tools maps client tool definitions and tool_choice. Server tools (a type
// such as web_search_20250305) run inside Anthropic's API and mean nothing
// to a serve, so they are skipped. Without any forwarded tool, tool_choice
// is dropped too: vLLM rejects a tool_choice with no tools.
func (c *anthropicConverter) tools(rawTools, rawChoice json.RawMessage) {
	var items []json.RawMessage
	json.Unmarshal(rawTools, &items)
	for _, it := range items {
		var t anthropicTool
		if json.Unmarshal(it, &t) != nil || t.Name == "" {
			continue
		}
		if t.Type != "" && t.Type != "custom" && t.Type != "tool" {
			continue
		}
		params := emptySchema
		if len(t.InputSchema) > 0 && string(t.InputSchema) != "null" {
			if !isObject(t.InputSchema) {
				continue
			}
			params = t.InputSchema
		}
		c.est.add(t.Name)
		c.est.add(t.Description)
		c.est.addRawJSON(params)
		c.out.Tools = append(c.out.Tools, chatTool{Type: "function", Function: chatToolDef{Name: t.Name, Description: t.Description, Parameters: params, Strict: t.Strict}})
	}
	c.info.HasTools = len(c.out.Tools) > 0
	if len(items) > 0 {
		c.info.ToolStructure = true
	}
	var tc anthropicToolChoice
	if json.Unmarshal(rawChoice, &tc) != nil || tc.Type == "" {
		return
	}
	c.info.ToolStructure = true
	if !c.info.HasTools {
		return
	}
	switch tc.Type {
	case "auto":
		c.out.ToolChoice = "auto"
	case "any":
		c.out.ToolChoice = "required"
	case "none":
		c.out.ToolChoice = "none"
		return
	case "tool":
		if tc.Name == "" {
			return
		}
		var n namedToolChoice
		n.Type = "function"
		n.Function.Name = tc.Name
		c.out.ToolChoice = n
	default:
		return
	}
	if tc.DisableParallelToolUse {
		c.out.ParallelToolCalls = new(false)
	}
}

// sampling copies the scalar parameters that have an OpenAI counterpart.
func (c *anthropicConverter) sampling(req *anthropicRequest) {
	for _, p := range []struct {
		dst *json.RawMessage
		src json.RawMessage
	}{{&c.out.Temperature, req.Temperature}, {&c.out.TopP, req.TopP}, {&c.out.TopK, req.TopK}} {
		if isNumber(p.src) {
			*p.dst = p.src
		}
	}
	var stops []json.RawMessage
	json.Unmarshal(req.StopSequences, &stops)
	for _, s := range stops {
		if v := str(s); v != "" {
			c.out.Stop = append(c.out.Stop, v)
		}
	}
	if string(req.Stream) == "true" {
		c.info.Stream = true
		c.out.Stream = true
		// Without it vLLM/SGLang send no usage and the reply would carry
		// estimates instead of real counts.
		c.out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	var md struct {
		UserID json.RawMessage `json:"user_id"`
	}
	if json.Unmarshal(req.Metadata, &md) == nil {
		c.out.User = str(md.UserID)
	}
}

func (c *anthropicConverter) thinking(raw json.RawMessage, style ThinkingStyle) {
	var t struct {
		Type         string `json:"type"`
		BudgetTokens int    `json:"budget_tokens"`
	}
	if json.Unmarshal(raw, &t) != nil {
		return
	}
	var on bool
	switch t.Type {
	case "enabled", "adaptive":
		on = true
	case "disabled":
	default:
		return
	}
	c.info.Thinking = on
	switch style {
	case ThinkingTemplateKwargs:
		c.out.ChatTemplateKwargs = &templateKwargs{EnableThinking: on, Thinking: on}
	case ThinkingReasoningEffort:
		if on {
			c.out.ReasoningEffort = effortFor(t.BudgetTokens)
		}
	}
}

// effortFor buckets a thinking budget; no budget means the middle.
func effortFor(budget int) string {
	switch {
	case budget <= 0:
		return "medium"
	case budget < 4096:
		return "low"
	case budget < 16384:
		return "medium"
	default:
		return "high"
	}
}
