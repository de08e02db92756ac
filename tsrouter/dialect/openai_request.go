package dialect

import (
	"encoding/json"
	"strconv"
	"strings"
)

// ToAnthropicOptions adjusts OpenAIToAnthropic.
type ToAnthropicOptions struct {
	// Model, if set, is written as the upstream model instead of the
	// caller's string.
	Model string
	// DefaultMaxTokens is max_tokens when the caller sent none (Anthropic
	// requires one); 0 means 1024, the Python router's value.
	DefaultMaxTokens int
}

type chatRequestIn struct {
	Model               json.RawMessage `json:"model"`
	Messages            json.RawMessage `json:"messages"`
	MaxTokens           json.RawMessage `json:"max_tokens"`
	MaxCompletionTokens json.RawMessage `json:"max_completion_tokens"`
	Temperature         json.RawMessage `json:"temperature"`
	TopP                json.RawMessage `json:"top_p"`
	TopK                json.RawMessage `json:"top_k"`
	Stop                json.RawMessage `json:"stop"`
	Stream              json.RawMessage `json:"stream"`
	StreamOptions       json.RawMessage `json:"stream_options"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   json.RawMessage `json:"parallel_tool_calls"`
	User                json.RawMessage `json:"user"`
	ReasoningEffort     json.RawMessage `json:"reasoning_effort"`
	ChatTemplateKwargs  json.RawMessage `json:"chat_template_kwargs"`
}

type chatMessageIn struct {
	Role       string            `json:"role"`
	Content    json.RawMessage   `json:"content"`
	ToolCalls  []json.RawMessage `json:"tool_calls"`
	ToolCallID string            `json:"tool_call_id"`
}

type chatPartIn struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

// anthropicRequestOut is the Messages body written upstream; field order is
// the wire order.
type anthropicRequestOut struct {
	Model         string               `json:"model"`
	MaxTokens     int                  `json:"max_tokens"`
	System        string               `json:"system,omitempty"`
	Messages      []anthropicMsgOut    `json:"messages"`
	Stream        bool                 `json:"stream"`
	Temperature   json.RawMessage      `json:"temperature,omitempty"`
	TopP          json.RawMessage      `json:"top_p,omitempty"`
	TopK          json.RawMessage      `json:"top_k,omitempty"`
	StopSequences []string             `json:"stop_sequences,omitempty"`
	Tools         []anthropicToolOut   `json:"tools,omitempty"`
	ToolChoice    *anthropicChoiceOut  `json:"tool_choice,omitempty"`
	Metadata      *anthropicMetadata   `json:"metadata,omitempty"`
	Thinking      *anthropicThinkingIn `json:"thinking,omitempty"`
}

type anthropicMsgOut struct {
	Role    string `json:"role"`
	Content []any  `json:"content"`
}

type imageBlockOut struct {
	Type   string    `json:"type"`
	Source sourceOut `json:"source"`
}

type sourceOut struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type toolResultOut struct {
	Type      string `json:"type"`
	ToolUseID string `json:"tool_use_id"`
	Content   string `json:"content"`
}

type anthropicToolOut struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type anthropicChoiceOut struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

type anthropicMetadata struct {
	UserID string `json:"user_id"`
}

type anthropicThinkingIn struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens,omitempty"`
}

// OpenAIToAnthropic translates an OpenAI Chat Completions request into an
// Anthropic Messages body, for tiers that speak Anthropic. Nothing is
// required (max_tokens defaults, see ToAnthropicOptions) except a messages
// array; malformed messages, parts, tools and calls are skipped. See
// doc.go for the mapping.
func OpenAIToAnthropic(body []byte, opts ToAnthropicOptions) ([]byte, RequestInfo, error) {
	var req chatRequestIn
	if err := decodeObject(body, &req); err != nil {
		return nil, RequestInfo{}, err
	}
	var raw []json.RawMessage
	if json.Unmarshal(req.Messages, &raw) != nil {
		return nil, RequestInfo{}, &RequestError{Message: "messages: field required"}
	}
	c := &openaiConverter{}
	c.info.Model = str(req.Model)
	if c.info.Model == "" {
		c.info.Model = "chat"
	}
	c.out.Model = c.info.Model
	if opts.Model != "" {
		c.out.Model = opts.Model
	}
	c.info.MaxTokens = positiveInt(req.MaxTokens)
	if c.info.MaxTokens == 0 {
		c.info.MaxTokens = positiveInt(req.MaxCompletionTokens)
	}
	c.out.MaxTokens = c.info.MaxTokens
	if c.out.MaxTokens == 0 {
		c.out.MaxTokens = orDefault(opts.DefaultMaxTokens, 1024)
	}
	var system []string
	c.out.Messages = make([]anthropicMsgOut, 0, len(raw))
	for _, r := range raw {
		var m chatMessageIn
		if json.Unmarshal(r, &m) != nil {
			continue
		}
		switch m.Role {
		case "system", "developer":
			if t := c.partsText(m.Content); t != "" {
				system = append(system, t)
			}
		case "user":
			c.add("user", c.userBlocks(m.Content))
		case "assistant":
			c.add("assistant", c.assistantBlocks(&m))
		case "tool":
			if m.ToolCallID == "" {
				continue
			}
			c.info.ToolStructure = true
			c.add("user", []any{toolResultOut{Type: "tool_result", ToolUseID: m.ToolCallID, Content: c.partsText(m.Content)}})
		}
	}
	c.out.System = strings.Join(system, "\n")
	c.tools(req.Tools, req.ToolChoice, string(req.ParallelToolCalls) == "false")
	c.sampling(&req)
	c.info.InputTokens = c.est.tokens()
	return marshal(&c.out), c.info, nil
}

type openaiConverter struct {
	out  anthropicRequestOut
	info RequestInfo
	est  estimator
}

// add appends a turn, merging it into the previous one of the same role:
// consecutive tool messages become one user message with several
// tool_result blocks (followed by any user text), which is the shape
// Anthropic requires after a multi-call assistant turn.
func (c *openaiConverter) add(role string, blocks []any) {
	if len(blocks) == 0 {
		return
	}
	if n := len(c.out.Messages); n > 0 && c.out.Messages[n-1].Role == role {
		c.out.Messages[n-1].Content = append(c.out.Messages[n-1].Content, blocks...)
		return
	}
	c.out.Messages = append(c.out.Messages, anthropicMsgOut{Role: role, Content: blocks})
}

// partsText flattens string or parts content to text (parts joined with
// "\n"), for system prompts and tool results.
func (c *openaiConverter) partsText(raw json.RawMessage) string {
	if isString(raw) {
		s := str(raw)
		c.est.add(s)
		return s
	}
	var parts []chatPartIn
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var texts []string
	for _, p := range parts {
		if p.Type == "text" {
			texts = append(texts, p.Text)
			c.est.add(p.Text)
		}
	}
	return strings.Join(texts, "\n")
}

func (c *openaiConverter) userBlocks(raw json.RawMessage) []any {
	if isString(raw) {
		s := str(raw)
		if s == "" {
			return nil
		}
		c.est.add(s)
		return []any{textBlock{Type: "text", Text: s}}
	}
	var items []json.RawMessage
	json.Unmarshal(raw, &items)
	var blocks []any
	for _, it := range items {
		var p chatPartIn
		if json.Unmarshal(it, &p) != nil {
			continue
		}
		switch p.Type {
		case "text":
			// Anthropic rejects empty text blocks.
			if p.Text != "" {
				blocks = append(blocks, textBlock{Type: "text", Text: p.Text})
				c.est.add(p.Text)
			}
		case "image_url":
			if src, ok := imageSource(p.ImageURL.URL); ok {
				blocks = append(blocks, imageBlockOut{Type: "image", Source: src})
				c.info.Images++
			}
		}
	}
	return blocks
}

// imageSource turns an image URL back into an Anthropic source: a base64
// data: URL becomes a base64 source, an http(s) URL a url source.
func imageSource(url string) (sourceOut, bool) {
	if rest, ok := strings.CutPrefix(url, "data:"); ok {
		meta, data, ok := strings.Cut(rest, ",")
		mt, isB64 := strings.CutSuffix(meta, ";base64")
		if !ok || !isB64 || mt == "" || data == "" {
			return sourceOut{}, false
		}
		return sourceOut{Type: "base64", MediaType: mt, Data: data}, true
	}
	if strings.HasPrefix(url, "https://") || strings.HasPrefix(url, "http://") {
		return sourceOut{Type: "url", URL: url}, true
	}
	return sourceOut{}, false
}

// assistantBlocks maps an assistant turn: its text, then a tool_use block
// per call with the arguments parsed back into an object. Reasoning fields
// on history turns are dropped: Anthropic only accepts thinking blocks
// with a valid signature, which a translated turn cannot have.
func (c *openaiConverter) assistantBlocks(m *chatMessageIn) []any {
	var blocks []any
	if t := c.partsText(m.Content); t != "" {
		blocks = append(blocks, textBlock{Type: "text", Text: t})
	}
	for _, raw := range m.ToolCalls {
		var tc chatToolCallIn
		if json.Unmarshal(raw, &tc) != nil || tc.Function.Name == "" {
			continue
		}
		c.info.ToolStructure = true
		id := tc.ID
		if id == "" {
			id = newID("toolu_")
		}
		input := toolInput(tc.Function.Arguments)
		c.est.add(tc.Function.Name)
		c.est.addRawJSON(input)
		blocks = append(blocks, toolUseBlock{Type: "tool_use", ID: id, Name: tc.Function.Name, Input: input})
	}
	return blocks
}

type chatToolIn struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

func (c *openaiConverter) tools(rawTools, rawChoice json.RawMessage, noParallel bool) {
	var items []json.RawMessage
	json.Unmarshal(rawTools, &items)
	for _, it := range items {
		var t chatToolIn
		if json.Unmarshal(it, &t) != nil || t.Type != "function" || t.Function.Name == "" {
			continue
		}
		schema := emptySchema
		if isObject(t.Function.Parameters) {
			schema = t.Function.Parameters
		}
		c.est.add(t.Function.Name)
		c.est.add(t.Function.Description)
		c.est.addRawJSON(schema)
		c.out.Tools = append(c.out.Tools, anthropicToolOut{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	c.info.HasTools = len(c.out.Tools) > 0
	if len(items) > 0 || len(rawChoice) > 0 && string(rawChoice) != "null" {
		c.info.ToolStructure = true
	}
	if !c.info.HasTools {
		return
	}
	var choice *anthropicChoiceOut
	switch s := str(rawChoice); s {
	case "auto":
		choice = &anthropicChoiceOut{Type: "auto"}
	case "required":
		choice = &anthropicChoiceOut{Type: "any"}
	case "none":
		choice = &anthropicChoiceOut{Type: "none"}
	case "":
		var n namedToolChoice
		if json.Unmarshal(rawChoice, &n) == nil && n.Function.Name != "" {
			choice = &anthropicChoiceOut{Type: "tool", Name: n.Function.Name}
		}
	}
	if noParallel && (choice == nil || choice.Type != "none") {
		if choice == nil {
			choice = &anthropicChoiceOut{Type: "auto"}
		}
		choice.DisableParallelToolUse = true
	}
	c.out.ToolChoice = choice
}

func (c *openaiConverter) sampling(req *chatRequestIn) {
	if isNumber(req.Temperature) {
		// OpenAI allows up to 2, Anthropic up to 1: clamp rather than
		// have the serve reject the request.
		c.out.Temperature = req.Temperature
		if f, err := strconv.ParseFloat(string(req.Temperature), 64); err == nil && f > 1 {
			c.out.Temperature = json.RawMessage("1")
		}
	}
	if isNumber(req.TopP) {
		c.out.TopP = req.TopP
	}
	if isNumber(req.TopK) {
		c.out.TopK = req.TopK
	}
	if s := str(req.Stop); s != "" {
		c.out.StopSequences = []string{s}
	} else {
		var stops []json.RawMessage
		json.Unmarshal(req.Stop, &stops)
		for _, s := range stops {
			if v := str(s); v != "" {
				c.out.StopSequences = append(c.out.StopSequences, v)
			}
		}
	}
	if string(req.Stream) == "true" {
		c.info.Stream, c.out.Stream = true, true
		var so struct {
			IncludeUsage bool `json:"include_usage"`
		}
		json.Unmarshal(req.StreamOptions, &so)
		c.info.IncludeUsage = so.IncludeUsage
	}
	if u := str(req.User); u != "" {
		c.out.Metadata = &anthropicMetadata{UserID: u}
	}
	c.thinking(req)
}

// thinking maps reasoning_effort, or chat_template_kwargs.enable_thinking,
// to an Anthropic thinking budget (minimal/low 1024, medium 4096, high
// 16384 tokens). Anthropic wants 1024 <= budget < max_tokens, so a budget
// that does not fit under max_tokens is lowered, and dropped below 1024.
// Anthropic also rejects thinking together with forced tool use or with
// changed temperature/top_k (and top_p below 0.95): a forced tool_choice
// wins over thinking, since the caller's tool loop depends on it; thinking
// wins over those sampling knobs, which are dropped.
func (c *openaiConverter) thinking(req *chatRequestIn) {
	var kw struct {
		EnableThinking *bool `json:"enable_thinking"`
	}
	json.Unmarshal(req.ChatTemplateKwargs, &kw)
	budget := 0
	switch str(req.ReasoningEffort) {
	case "minimal", "low":
		budget = 1024
	case "medium":
		budget = 4096
	case "high", "xhigh", "max":
		budget = 16384
	default:
		if kw.EnableThinking == nil {
			return
		}
		if !*kw.EnableThinking {
			c.out.Thinking = &anthropicThinkingIn{Type: "disabled"}
			return
		}
		budget = 4096
	}
	budget = min(budget, c.out.MaxTokens-1)
	if budget < 1024 {
		return
	}
	if tc := c.out.ToolChoice; tc != nil && (tc.Type == "any" || tc.Type == "tool") {
		return
	}
	c.info.Thinking = true
	c.out.Thinking = &anthropicThinkingIn{Type: "enabled", BudgetTokens: budget}
	c.out.Temperature, c.out.TopK = nil, nil
	if f, err := strconv.ParseFloat(string(c.out.TopP), 64); err == nil && f < 0.95 {
		c.out.TopP = nil
	}
}

// positiveInt reads a positive integer, else 0.
func positiveInt(raw json.RawMessage) int {
	n, err := strconv.Atoi(string(raw))
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// orDefault returns v, or def when v is not positive.
func orDefault(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
