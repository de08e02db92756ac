package dialect

import (
	"encoding/json"
	"strconv"
	"strings"
)

// This file maps the Responses tool kinds a chat serve has no notion of —
// namespaces, free-form (custom) tools and hosted tools — onto plain
// function tools, and back.
//
// A namespace {type: namespace, name: NS, tools: [function…]} becomes one
// function per member named NS + NamespaceSeparator + NAME; the model's call
// of such a function is returned as a function_call with name NAME and
// namespace NS, as the Responses API reports calls of namespaced tools. A
// custom tool {type: custom, name, description, format} becomes a function
// whose one string parameter "input" carries the free-form text (the
// description says which format it must follow); the call is returned as a
// custom_tool_call item whose input is that string. The mapping is kept per
// request (RequestInfo.ToolOrigins) so it is reversed exactly, never
// guessed from a name.

// NamespaceSeparator joins a namespace and a member tool's name into the
// function name the serve sees. Both halves may contain single underscores
// (multi_agent_v1, spawn_agent); the mapping back uses the request's table,
// not the separator, so no name is ambiguous.
const NamespaceSeparator = "__"

// HostedToolsPolicy says what a Responses request's hosted tools (web
// search, file search, code interpreter, …), which a serve cannot run,
// get: dropped with a warning (the default) or refused.
type HostedToolsPolicy uint8

const (
	// HostedDrop removes hosted tools from the request and reports them in
	// RequestInfo.DroppedTools, for the warning header and the record.
	HostedDrop HostedToolsPolicy = iota
	// HostedRefuse answers a request declaring one with 400
	// unsupported_feature naming it.
	HostedRefuse
)

// ResponsesOptions are the operator's choices for translating Responses
// requests.
type ResponsesOptions struct {
	Hosted HostedToolsPolicy
}

// ToolOrigin is where a function the serve was offered came from, when it
// is not a plain function tool.
type ToolOrigin struct {
	// Namespace is the namespace's name for a namespace member.
	Namespace string
	// Name is the tool's own name (the member's, or the custom tool's).
	Name string
	// Custom marks a free-form tool: its call's "input" argument is the
	// custom_tool_call's input.
	Custom bool
}

// hostedTools are the Responses tool types that run on OpenAI's side.
var hostedTools = map[string]bool{
	"web_search": true, "web_search_preview": true, "web_search_2025_08_26": true,
	"web_search_preview_2025_03_11": true, "file_search": true, "code_interpreter": true,
	"computer_use_preview": true, "computer_use": true, "image_generation": true,
	"mcp": true, "local_shell": true,
}

// customInputSchema is the parameters of a custom tool offered as a
// function: one required string.
var customInputSchema = json.RawMessage(`{"type":"object","properties":{"input":{"type":"string","description":"The tool's free-form input, exactly as the tool description's format requires."}},"required":["input"],"additionalProperties":false}`)

// maxCustomFormat bounds the grammar copied into a custom tool's
// description.
const maxCustomFormat = 16 << 10

// declare records a serve-side function name, refusing a duplicate: two
// tools flattened to one name could not be told apart in the reply.
func (c *responsesConverter) declare(path, name string, origin *ToolOrigin) error {
	if c.names == nil {
		c.names = map[string]bool{}
	}
	if c.names[name] {
		return &RequestError{Message: path + ": tool name " + strconv.Quote(clipField(name)) + " is declared twice"}
	}
	c.names[name] = true
	if origin != nil {
		if c.info.ToolOrigins == nil {
			c.info.ToolOrigins = map[string]ToolOrigin{}
		}
		c.info.ToolOrigins[name] = *origin
	}
	return nil
}

// namespaceTool flattens a namespace's function tools.
func (c *responsesConverter) namespaceTool(path string, el json.RawMessage) error {
	var ns struct {
		Name  json.RawMessage   `json:"name"`
		Tools []json.RawMessage `json:"tools"`
	}
	if json.Unmarshal(el, &ns) != nil {
		return &RequestError{Message: path + ".tools must be an array of tools"}
	}
	if !nonEmptyString(ns.Name) {
		return &RequestError{Message: path + ".name must be a non-empty string"}
	}
	space := str(ns.Name)
	for j, member := range ns.Tools {
		mp := path + ".tools[" + strconv.Itoa(j) + "]"
		var t responsesTool
		if !isObject(member) || json.Unmarshal(member, &t) != nil {
			return &RequestError{Message: mp + " must be an object"}
		}
		if str(t.Type) != "function" {
			c.refuse(mp + ".type (only function inside a namespace)")
			continue
		}
		if !nonEmptyString(t.Name) {
			return &RequestError{Message: mp + ".name must be a non-empty string"}
		}
		flat := space + NamespaceSeparator + str(t.Name)
		if err := c.functionTool(mp, &t, flat, &ToolOrigin{Namespace: space, Name: str(t.Name)}); err != nil {
			return err
		}
	}
	return nil
}

// customTool offers a free-form tool as a function with one string
// argument; the description carries the input format (a grammar or
// "text").
func (c *responsesConverter) customTool(path string, el json.RawMessage) error {
	var t struct {
		Name        json.RawMessage `json:"name"`
		Description json.RawMessage `json:"description"`
		Format      json.RawMessage `json:"format"`
	}
	if json.Unmarshal(el, &t) != nil || !nonEmptyString(t.Name) {
		return &RequestError{Message: path + ".name must be a non-empty string"}
	}
	if hasValue(t.Description) && !isString(t.Description) {
		return &RequestError{Message: path + ".description must be a string"}
	}
	var b strings.Builder
	b.WriteString(str(t.Description))
	if hasValue(t.Format) {
		var f struct {
			Type       string `json:"type"`
			Syntax     string `json:"syntax"`
			Definition string `json:"definition"`
		}
		if !isObject(t.Format) || json.Unmarshal(t.Format, &f) != nil {
			return &RequestError{Message: path + ".format must be an object"}
		}
		if f.Type == "grammar" && f.Definition != "" {
			if len(f.Definition) > maxCustomFormat {
				return &RequestError{Message: path + ".format.definition is longer than " + strconv.Itoa(maxCustomFormat) + " bytes"}
			}
			b.WriteString("\n\nPass the whole input as the string argument \"input\". It must follow this ")
			b.WriteString(f.Syntax)
			b.WriteString(" grammar:\n")
			b.WriteString(f.Definition)
		}
	}
	if b.Len() == 0 || !strings.Contains(b.String(), "\"input\"") {
		b.WriteString("\n\nPass the whole free-form input as the string argument \"input\".")
	}
	name := str(t.Name)
	if err := c.declare(path, name, &ToolOrigin{Name: name, Custom: true}); err != nil {
		return err
	}
	def := chatToolDef{Name: name, Description: strings.TrimSpace(b.String()), Parameters: customInputSchema}
	c.est.add(def.Name)
	c.est.add(def.Description)
	c.est.addRawJSON(def.Parameters)
	c.out.Tools = append(c.out.Tools, chatTool{Type: "function", Function: def})
	return nil
}

// hostedTool drops or refuses a tool the serve cannot run.
func (c *responsesConverter) hostedTool(path, typ string) {
	if c.opts.Hosted == HostedRefuse {
		c.refuse(path + ".type (" + typ + " is a hosted tool; this router is configured to refuse them)")
		return
	}
	for _, d := range c.info.DroppedTools {
		if d == typ {
			return
		}
	}
	c.info.DroppedTools = append(c.info.DroppedTools, typ)
}

// serveName is the function name the serve knows a history call by: a
// namespaced call's flattened name.
func serveName(namespace json.RawMessage, name string) string {
	if nonEmptyString(namespace) {
		return str(namespace) + NamespaceSeparator + name
	}
	return name
}

// customCall is a custom_tool_call input item (the caller echoing the
// model's earlier call): an assistant tool call whose arguments wrap the
// input.
func (c *responsesConverter) customCall(path string, el json.RawMessage) error {
	var it struct {
		CallID json.RawMessage `json:"call_id"`
		Name   json.RawMessage `json:"name"`
		Input  json.RawMessage `json:"input"`
	}
	json.Unmarshal(el, &it)
	if !nonEmptyString(it.CallID) {
		return &RequestError{Message: path + ".call_id must be a non-empty string"}
	}
	if !nonEmptyString(it.Name) {
		return &RequestError{Message: path + ".name must be a non-empty string"}
	}
	if hasValue(it.Input) && !isString(it.Input) {
		return &RequestError{Message: path + ".input must be a string"}
	}
	args, _ := json.Marshal(struct {
		Input string `json:"input"`
	}{str(it.Input)})
	c.appendCall(chatToolCall{ID: str(it.CallID), Type: "function", Function: chatFunction{Name: str(it.Name), Arguments: string(args)}})
	return nil
}

// customToFunctionArgs is the inverse of customCall for a reply: the
// "input" argument of a call of a custom tool, escaped for a JSON string.
// Arguments that are not {"input": string} — a model ignoring the schema —
// are passed on as the input text itself, so nothing is lost.
func customToFunctionArgs(args string) []byte {
	var a struct {
		Input *string `json:"input"`
	}
	if json.Unmarshal([]byte(args), &a) == nil && a.Input != nil {
		return appendEscaped(nil, *a.Input)
	}
	return appendEscaped(nil, args)
}

// unescapeArgs decodes escaped JSON string content (a call's arguments as
// the reply carries them).
func unescapeArgs(escaped []byte) string {
	var s string
	b := make([]byte, 0, len(escaped)+2)
	b = append(b, '"')
	b = append(b, escaped...)
	b = append(b, '"')
	if json.Unmarshal(b, &s) != nil {
		return string(escaped)
	}
	return s
}

// maxClientMetadata bounds client_metadata: a handful of ids (Codex
// sends a few hundred bytes of JSON as x-codex-turn-metadata).
const (
	maxClientMetadata    = 32
	maxClientMetadataLen = 8 << 10
)

// clientMetadata validates client_metadata — an object of short strings
// (Codex sends its turn, thread and session ids) — which is never
// forwarded to the serve.
func clientMetadata(raw json.RawMessage) error {
	if !hasValue(raw) {
		return nil
	}
	var m map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &m) != nil {
		return &RequestError{Message: "client_metadata must be an object"}
	}
	if len(m) > maxClientMetadata {
		return &RequestError{Message: "client_metadata has more than " + strconv.Itoa(maxClientMetadata) + " members"}
	}
	for k, v := range m {
		if len(k) > 64 || hasValue(v) && (!isString(v) || len(v) > maxClientMetadataLen) {
			return &RequestError{Message: "client_metadata." + clipField(k) + " must be a string of at most " + strconv.Itoa(maxClientMetadataLen) + " bytes"}
		}
	}
	return nil
}
