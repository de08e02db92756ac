package dialect

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// UnsupportedError is a Responses request that uses a feature the router
// does not offer (it serves the stateless subset of the API): stored
// state, hosted tools, images, … The
// handler answers it with 400 unsupported_feature and Error().
type UnsupportedError struct {
	// Fields names every offending field, sorted; a value-based refusal
	// says in parentheses what is supported. Caller values are never
	// echoed, only the field paths.
	Fields []string
}

func (e *UnsupportedError) Error() string {
	return "unsupported Responses feature(s): " + strings.Join(e.Fields, ", ")
}

// responsesFields is the strict allow-list of top-level Responses members
// (the stateless subset). Anything else — previous_response_id, user, metadata,
// background, … — is refused rather than silently ignored: a client
// relying on it would get a different answer than it asked for.
//
// One addition to the Python router's list: prompt_cache_key, accepted and
// dropped. Codex sends it on every request; it only steers which of
// OpenAI's machines holds the prompt cache, and vLLM and SGLang cache
// prefixes on their own, so dropping it changes no answer — refusing it
// would lock out the main Responses client. client_metadata (Codex's
// turn, thread and session ids) is validated and never forwarded: it
// describes the client, not the answer.
var responsesFields = map[string]bool{
	"include": true, "input": true, "instructions": true, "max_output_tokens": true,
	"model": true, "parallel_tool_calls": true, "reasoning": true, "store": true,
	"stream": true, "temperature": true, "text": true, "tool_choice": true,
	"tools": true, "top_p": true, "truncation": true, "prompt_cache_key": true,
	"client_metadata": true,
}

// reasoningEfforts are the accepted reasoning.effort values. The effort is
// validated, not relayed: vLLM's reasoning_effort takes low/medium/high
// only and most templates ignore it.
var reasoningEfforts = map[string]bool{"minimal": true, "low": true, "medium": true, "high": true, "xhigh": true}

// responsesChatOut is the OpenAI Chat body written upstream; field order
// is the wire order.
type responsesChatOut struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	MaxCompletionTokens int             `json:"max_completion_tokens,omitempty"`
	Stream              bool            `json:"stream"`
	StreamOptions       *streamOptions  `json:"stream_options,omitempty"`
	Temperature         json.RawMessage `json:"temperature,omitempty"`
	TopP                json.RawMessage `json:"top_p,omitempty"`
	Tools               []chatTool      `json:"tools,omitempty"`
	ToolChoice          any             `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
}

type responseFormat struct {
	Type       string         `json:"type"`
	JSONSchema jsonSchemaSpec `json:"json_schema"`
}

type jsonSchemaSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ResponsesToOpenAI translates an OpenAI Responses request (the stateless
// subset: no stored state or images; hosted tools dropped) into an OpenAI
// Chat Completions body. It is
// strict: a member outside the allow-list, or a feature the router cannot
// honour (store, images, …), is an
// *UnsupportedError naming every such field; a malformed value is a
// *RequestError. Unknown keys inside input items and function tools are
// ignored: clients echo output items back with ids and statuses.
func ResponsesToOpenAI(body []byte) (out []byte, info RequestInfo, err error) {
	return ResponsesToOpenAIWith(body, ResponsesOptions{})
}

// ResponsesToOpenAIWith is ResponsesToOpenAI with the operator's options
// (what hosted tools get).
func ResponsesToOpenAIWith(body []byte, opts ResponsesOptions) (out []byte, info RequestInfo, err error) {
	var req map[string]json.RawMessage
	if err := decodeObject(body, &req); err != nil {
		return nil, RequestInfo{}, err
	}
	c := &responsesConverter{opts: opts}
	for k := range req {
		if !responsesFields[k] {
			c.refuse(clipField(k))
		}
	}
	err = c.convert(req)
	// Unsupported features win over a malformed value: the caller learns
	// everything the router cannot do (collected until the error) at once.
	if len(c.unsupported) > 0 {
		slices.Sort(c.unsupported)
		return nil, RequestInfo{}, &UnsupportedError{Fields: c.unsupported}
	}
	if err != nil {
		return nil, RequestInfo{}, err
	}
	c.info.InputTokens = c.est.tokens()
	return marshal(&c.out), c.info, nil
}

// clipField bounds a caller-chosen key quoted back in an error.
func clipField(s string) string {
	if len(s) > 64 {
		return strings.ToValidUTF8(s[:64], "") + "…"
	}
	return s
}

type responsesConverter struct {
	out         responsesChatOut
	info        RequestInfo
	est         estimator
	unsupported []string
	opts        ResponsesOptions
	// names are the function names offered to the serve so far.
	names map[string]bool
	// reasoning is the text of reasoning input items waiting for the
	// assistant turn they belong to.
	reasoning []string
}

func (c *responsesConverter) refuse(field string) { c.unsupported = append(c.unsupported, field) }

// hasValue reports whether a member was sent with a value: JSON null counts
// as absent, as the SDKs send it for unset optionals (Codex sends
// "reasoning": null).
func hasValue(v json.RawMessage) bool { return len(v) > 0 && string(v) != "null" }

func (c *responsesConverter) convert(req map[string]json.RawMessage) error {
	model := req["model"]
	if !nonEmptyString(model) || str(model) == "" {
		return &RequestError{Message: "model must be a non-empty string"}
	}
	c.info.Model = str(model)
	c.out.Model = c.info.Model
	c.out.Messages = []chatMessage{} // "messages": [] even for an empty input
	switch v := req["stream"]; {
	case !hasValue(v), string(v) == "false":
	case string(v) == "true":
		c.info.Stream, c.out.Stream = true, true
		// Without it vLLM/SGLang send no usage and the reply would carry
		// estimates instead of real counts.
		c.out.StreamOptions = &streamOptions{IncludeUsage: true}
	default:
		return &RequestError{Message: "stream must be a boolean"}
	}
	if v := req["instructions"]; hasValue(v) {
		if !isString(v) {
			return &RequestError{Message: "instructions must be a string"}
		}
		if s := str(v); s != "" {
			c.est.add(s)
			c.out.Messages = append(c.out.Messages, chatMessage{Role: "system", Content: s})
		}
	}
	if !hasValue(req["input"]) {
		return &RequestError{Message: "input is required (a string or an array of items)"}
	}
	if err := c.input(req["input"]); err != nil {
		return err
	}
	if err := c.tools(req["tools"], req["tool_choice"], req["parallel_tool_calls"]); err != nil {
		return err
	}
	if err := clientMetadata(req["client_metadata"]); err != nil {
		return err
	}
	if err := c.sampling(req); err != nil {
		return err
	}
	if err := c.text(req["text"]); err != nil {
		return err
	}
	return c.statelessOnly(req)
}

// statelessOnly checks the members that only have one acceptable value
// here because the router keeps no state and truncates nothing.
func (c *responsesConverter) statelessOnly(req map[string]json.RawMessage) error {
	switch v := req["store"]; {
	case !hasValue(v), string(v) == "false":
	case string(v) == "true":
		c.refuse("store (only false)")
	default:
		return &RequestError{Message: "store must be a boolean"}
	}
	if v := req["truncation"]; hasValue(v) {
		if !isString(v) {
			return &RequestError{Message: "truncation must be a string"}
		}
		if str(v) != "disabled" {
			c.refuse(`truncation (only "disabled")`)
		}
	}
	if v := req["include"]; hasValue(v) {
		var inc []json.RawMessage
		if v[0] != '[' || json.Unmarshal(v, &inc) != nil {
			return &RequestError{Message: "include must be an array of strings"}
		}
		for i, s := range inc {
			if str(s) != "reasoning.encrypted_content" {
				c.refuse("include[" + strconv.Itoa(i) + `] (only "reasoning.encrypted_content")`)
			}
		}
	}
	if v := req["reasoning"]; hasValue(v) {
		var r map[string]json.RawMessage
		if v[0] != '{' || json.Unmarshal(v, &r) != nil {
			return &RequestError{Message: "reasoning must be an object"}
		}
		for _, k := range slices.Sorted(maps.Keys(r)) {
			val := r[k]
			switch k {
			case "effort":
				if hasValue(val) && !reasoningEfforts[str(val)] {
					c.refuse("reasoning.effort (minimal, low, medium, high or xhigh)")
				}
			case "summary":
				if hasValue(val) && !isString(val) {
					return &RequestError{Message: "reasoning.summary must be a string"}
				}
			default:
				c.refuse("reasoning." + clipField(k))
			}
		}
	}
	return nil
}

// responsesItem is any input item; members stay raw so a wrong type gets a
// precise error instead of failing the whole decode.
type responsesItem struct {
	Type      json.RawMessage `json:"type"`
	Role      json.RawMessage `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    json.RawMessage `json:"call_id"`
	Name      json.RawMessage `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Output    json.RawMessage `json:"output"`
	Namespace json.RawMessage `json:"namespace"`
}

// input turns the input (a string, or message / function_call /
// function_call_output / reasoning items) into chat messages.
func (c *responsesConverter) input(raw json.RawMessage) error {
	if isString(raw) {
		s := str(raw)
		c.est.add(s)
		c.out.Messages = append(c.out.Messages, chatMessage{Role: "user", Content: s})
		return nil
	}
	var items []json.RawMessage
	if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
		return &RequestError{Message: "input must be a string or an array of items"}
	}
	for i, el := range items {
		path := "input[" + strconv.Itoa(i) + "]"
		var it responsesItem
		if !isObject(el) || json.Unmarshal(el, &it) != nil {
			return &RequestError{Message: path + " must be an object"}
		}
		typ := "message"
		if hasValue(it.Type) {
			if !isString(it.Type) {
				return &RequestError{Message: path + ".type must be a string"}
			}
			typ = str(it.Type)
		}
		var err error
		switch typ {
		case "message":
			err = c.message(path, &it)
		case "function_call":
			err = c.functionCall(path, &it)
		case "function_call_output", "custom_tool_call_output":
			err = c.functionOutput(path, &it)
		case "custom_tool_call":
			err = c.customCall(path, el)
		case "reasoning":
			c.reasoningItem(el)
		default:
			c.refuse(path + ".type (message, function_call, function_call_output, custom_tool_call, custom_tool_call_output or reasoning)")
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *responsesConverter) message(path string, it *responsesItem) error {
	role := str(it.Role)
	switch role {
	case "developer":
		role = "system"
	case "system", "user", "assistant":
	default:
		return &RequestError{Message: path + ".role must be system, developer, user or assistant"}
	}
	text, err := c.textContent(path+".content", it.Content, true)
	if err != nil {
		return err
	}
	m := chatMessage{Role: role, Content: text}
	if role == "assistant" {
		m.ReasoningContent = c.takeReasoning()
	}
	c.out.Messages = append(c.out.Messages, m)
	return nil
}

// textContent flattens string or parts content to text, parts joined with
// "\n" as vLLM flattens them for string templates. Only text parts are
// supported; an image or file is refused, never dropped.
func (c *responsesConverter) textContent(path string, raw json.RawMessage, required bool) (string, error) {
	if isString(raw) {
		s := str(raw)
		c.est.add(s)
		return s, nil
	}
	if !hasValue(raw) && !required {
		return "", nil
	}
	var parts []json.RawMessage
	if !hasValue(raw) || raw[0] != '[' || json.Unmarshal(raw, &parts) != nil {
		return "", &RequestError{Message: path + " must be a string or an array of content parts"}
	}
	texts := make([]string, 0, len(parts))
	for j, p := range parts {
		var part struct {
			Type json.RawMessage `json:"type"`
			Text json.RawMessage `json:"text"`
		}
		if !isObject(p) || json.Unmarshal(p, &part) != nil {
			return "", &RequestError{Message: path + "[" + strconv.Itoa(j) + "] must be an object"}
		}
		switch str(part.Type) {
		case "input_text", "output_text", "text":
			if !isString(part.Text) {
				return "", &RequestError{Message: path + "[" + strconv.Itoa(j) + "].text must be a string"}
			}
			s := str(part.Text)
			c.est.add(s)
			texts = append(texts, s)
		default:
			c.refuse(path + "[" + strconv.Itoa(j) + "].type (text parts only; images and files are not supported)")
		}
	}
	return strings.Join(texts, "\n"), nil
}

// functionCall appends a call to the assistant turn it belongs to: the
// previous message when that is the assistant's (its text, or earlier
// calls of the same parallel batch), else a new assistant message.
func (c *responsesConverter) functionCall(path string, it *responsesItem) error {
	if !nonEmptyString(it.CallID) {
		return &RequestError{Message: path + ".call_id must be a non-empty string"}
	}
	if !nonEmptyString(it.Name) {
		return &RequestError{Message: path + ".name must be a non-empty string"}
	}
	args := "{}"
	switch {
	case isString(it.Arguments):
		args = str(it.Arguments)
	case isObject(it.Arguments):
		args = string(compactJSON(it.Arguments))
	case hasValue(it.Arguments):
		return &RequestError{Message: path + ".arguments must be a string or an object"}
	}
	name := serveName(it.Namespace, str(it.Name))
	c.appendCall(chatToolCall{ID: str(it.CallID), Type: "function", Function: chatFunction{Name: name, Arguments: args}})
	return nil
}

// appendCall adds a history tool call to its assistant turn.
func (c *responsesConverter) appendCall(call chatToolCall) {
	c.info.ToolStructure = true
	c.est.add(call.Function.Name)
	c.est.add(call.Function.Arguments)
	if n := len(c.out.Messages); n > 0 && c.out.Messages[n-1].Role == "assistant" {
		last := &c.out.Messages[n-1]
		last.ToolCalls = append(last.ToolCalls, call)
		if last.ReasoningContent == "" {
			last.ReasoningContent = c.takeReasoning()
		}
		return
	}
	c.out.Messages = append(c.out.Messages, chatMessage{Role: "assistant", ToolCalls: []chatToolCall{call}, ReasoningContent: c.takeReasoning()})
}

func (c *responsesConverter) functionOutput(path string, it *responsesItem) error {
	if !nonEmptyString(it.CallID) {
		return &RequestError{Message: path + ".call_id must be a non-empty string"}
	}
	if !hasValue(it.Output) {
		return &RequestError{Message: path + ".output is required"}
	}
	text, err := c.textContent(path+".output", it.Output, true)
	if err != nil {
		return err
	}
	c.info.ToolStructure = true
	c.out.Messages = append(c.out.Messages, chatMessage{Role: "tool", ToolCallID: str(it.CallID), Content: text})
	return nil
}

// reasoningItem keeps the text of a reasoning item (the router's own
// output echoed back, as Codex does with store: false) for the next
// assistant turn's reasoning_content, which the Qwen3/GLM/DeepSeek
// templates read. Summaries and encrypted_content carry nothing a serve
// can use.
func (c *responsesConverter) reasoningItem(el json.RawMessage) {
	var r struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(el, &r) != nil {
		return
	}
	for _, p := range r.Content {
		if p.Type == "reasoning_text" && p.Text != "" {
			c.reasoning = append(c.reasoning, p.Text)
			c.est.add(p.Text)
		}
	}
}

func (c *responsesConverter) takeReasoning() string {
	s := strings.Join(c.reasoning, "\n")
	c.reasoning = nil
	return s
}

// responsesTool is a Responses tool definition: function tools are flat
// ({type, name, description, parameters, strict}), unlike Chat's.
type responsesTool struct {
	Type        json.RawMessage `json:"type"`
	Name        json.RawMessage `json:"name"`
	Description json.RawMessage `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      json.RawMessage `json:"strict"`
}

func (c *responsesConverter) tools(rawTools, rawChoice, rawParallel json.RawMessage) error {
	if hasValue(rawTools) {
		var items []json.RawMessage
		if rawTools[0] != '[' || json.Unmarshal(rawTools, &items) != nil {
			return &RequestError{Message: "tools must be an array"}
		}
		for i, el := range items {
			if err := c.tool("tools["+strconv.Itoa(i)+"]", el); err != nil {
				return err
			}
		}
	}
	hasTools := len(c.out.Tools) > 0
	c.info.HasTools = hasTools
	c.info.ToolStructure = c.info.ToolStructure || hasTools
	switch v := rawParallel; {
	case !hasValue(v):
	case string(v) == "false" || string(v) == "true":
		// The caller's choice reaches the serve (vLLM and SGLang honour
		// it; the stream translator gives each parallel call its own
		// output item). The Python router refused true because it could
		// not stream several calls; this one can.
		if hasTools {
			c.out.ParallelToolCalls = new(string(v) == "true")
		}
	default:
		return &RequestError{Message: "parallel_tool_calls must be a boolean"}
	}
	if !hasValue(rawChoice) {
		return nil
	}
	var choice any
	switch s := str(rawChoice); {
	case s == "auto" || s == "none" || s == "required":
		choice = s
	case isObject(rawChoice):
		var named map[string]json.RawMessage
		json.Unmarshal(rawChoice, &named)
		if len(named) != 2 || str(named["type"]) != "function" || !nonEmptyString(named["name"]) {
			c.refuse("tool_choice (auto, none, required or {type: function, name})")
			return nil
		}
		var n namedToolChoice
		n.Type = "function"
		n.Function.Name = str(named["name"])
		choice = n
	default:
		c.refuse("tool_choice (auto, none, required or {type: function, name})")
		return nil
	}
	// vLLM rejects a tool_choice without tools: with none left (only the
	// dropped collaboration namespace, say) it is dropped too.
	if hasTools {
		c.out.ToolChoice = choice
		c.info.ToolStructure = true
	}
	return nil
}

func (c *responsesConverter) tool(path string, el json.RawMessage) error {
	var t responsesTool
	if !isObject(el) || json.Unmarshal(el, &t) != nil {
		return &RequestError{Message: path + " must be an object"}
	}
	switch typ := str(t.Type); {
	case typ == "function":
	case typ == "namespace":
		return c.namespaceTool(path, el)
	case typ == "custom":
		return c.customTool(path, el)
	case hostedTools[typ]:
		c.hostedTool(path, typ)
		return nil
	default:
		c.refuse(path + ".type (function, namespace, custom or a hosted tool)")
		return nil
	}
	if !nonEmptyString(t.Name) {
		return &RequestError{Message: path + ".name must be a non-empty string"}
	}
	return c.functionTool(path, &t, str(t.Name), nil)
}

// functionTool offers a function tool to the serve under name.
func (c *responsesConverter) functionTool(path string, t *responsesTool, name string, origin *ToolOrigin) error {
	if err := c.declare(path, name, origin); err != nil {
		return err
	}
	def := chatToolDef{Name: name, Parameters: emptySchema}
	if hasValue(t.Description) {
		if !isString(t.Description) {
			return &RequestError{Message: path + ".description must be a string"}
		}
		def.Description = str(t.Description)
	}
	if hasValue(t.Parameters) {
		if !isObject(t.Parameters) {
			return &RequestError{Message: path + ".parameters must be an object"}
		}
		def.Parameters = compactJSON(t.Parameters)
	}
	switch string(t.Strict) {
	case "", "null":
	case "true", "false":
		def.Strict = new(string(t.Strict) == "true")
	default:
		return &RequestError{Message: path + ".strict must be a boolean"}
	}
	c.est.add(def.Name)
	c.est.add(def.Description)
	c.est.addRawJSON(def.Parameters)
	c.out.Tools = append(c.out.Tools, chatTool{Type: "function", Function: def})
	return nil
}

// sampling copies max_output_tokens (as max_completion_tokens, which the
// tier's output cap also clamps), temperature and top_p.
func (c *responsesConverter) sampling(req map[string]json.RawMessage) error {
	if v := req["max_output_tokens"]; hasValue(v) {
		n, ok := atoi(v)
		if !ok || n < 1 {
			return &RequestError{Message: "max_output_tokens must be a positive integer"}
		}
		c.out.MaxCompletionTokens, c.info.MaxTokens = n, n
	}
	for _, p := range []struct {
		name string
		dst  *json.RawMessage
	}{{"temperature", &c.out.Temperature}, {"top_p", &c.out.TopP}} {
		v := req[p.name]
		if !hasValue(v) {
			continue
		}
		if !isNumber(v) {
			return &RequestError{Message: p.name + " must be a number"}
		}
		*p.dst = v
	}
	return nil
}

// text maps {format: {type: json_schema, schema, name, strict,
// description}} to response_format; anything else in text (verbosity, the
// plain "text" format, json_object) is refused.
func (c *responsesConverter) text(raw json.RawMessage) error {
	if !hasValue(raw) {
		return nil
	}
	var t map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &t) != nil {
		return &RequestError{Message: "text must be an object"}
	}
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if k != "format" {
			c.refuse("text." + clipField(k))
		}
	}
	f := t["format"]
	if !hasValue(f) {
		return nil
	}
	var format map[string]json.RawMessage
	if f[0] != '{' || json.Unmarshal(f, &format) != nil {
		return &RequestError{Message: "text.format must be an object"}
	}
	if str(format["type"]) != "json_schema" {
		c.refuse("text.format.type (only json_schema)")
		return nil
	}
	spec := jsonSchemaSpec{Name: "response"}
	for _, k := range slices.Sorted(maps.Keys(format)) {
		v := format[k]
		switch k {
		case "type":
		case "schema":
			if !isObject(v) {
				return &RequestError{Message: "text.format.schema must be an object"}
			}
			spec.Schema = compactJSON(v)
		case "name", "description":
			if !hasValue(v) {
				continue
			}
			if !isString(v) {
				return &RequestError{Message: "text.format." + k + " must be a string"}
			}
			if k == "name" {
				spec.Name = str(v)
			} else {
				spec.Description = str(v)
			}
		case "strict":
			switch string(v) {
			case "null":
			case "true", "false":
				spec.Strict = new(string(v) == "true")
			default:
				return &RequestError{Message: "text.format.strict must be a boolean"}
			}
		default:
			c.refuse("text.format." + clipField(k))
		}
	}
	if spec.Schema == nil {
		return &RequestError{Message: "text.format.schema is required"}
	}
	c.out.ResponseFormat = &responseFormat{Type: "json_schema", JSONSchema: spec}
	return nil
}
