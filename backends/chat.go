package backends

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// Clamp records that the tier's max_output_tokens lowered the caller's
// completion budget; the front door reports it in response headers.
type Clamp struct {
	Requested, Applied int64
}

// tokenFields are the completion-budget fields of the chat dialects, in the
// order the caller's "requested" value is read from.
var tokenFields = [...]string{"max_tokens", "max_completion_tokens", "max_output_tokens"}

// PrepareOpenAI builds the upstream body for a same-dialect (OpenAI chat)
// request: the caller's bytes, with only the model, the output cap and the
// operator's extra_body_defaults (soft) and extra_body (hard, last) applied.
// Every other field, including its whitespace, is passed through untouched.
func (t *Tier) PrepareOpenAI(req *jsonobj.Object) ([]byte, *Clamp, error) {
	return t.prepare(req, true)
}

// prepare sets the model and the output cap and, with overrides, the
// operator's extra_body_defaults (soft) and extra_body (hard, last).
func (t *Tier) prepare(req *jsonobj.Object, overrides bool) ([]byte, *Clamp, error) {
	var e jsonobj.Edit
	if t.modelJSON != nil {
		e.Set("model", t.modelJSON)
	}
	clamp, err := t.clampTokens(req, &e)
	if err != nil {
		return nil, nil, err
	}
	if overrides {
		t.overrides(&e)
	}
	return req.Apply(&e), clamp, nil
}

func (t *Tier) overrides(e *jsonobj.Edit) {
	for _, m := range t.extraBodyDefaults {
		e.Default(m.key, m.raw)
	}
	for _, m := range t.extraBody {
		e.Set(m.key, m.raw)
	}
}

// clampTokens applies max_output_tokens: a caller value above the cap is
// lowered (in every budget field the caller used); no value at all gets the
// cap as max_tokens, silently. The serves' parsers take "5000", 5e3 and
// 5000.0 as 5000, so every form is judged here: an integer in any JSON
// number notation is clamped or rewritten as a plain integer; a string, a
// fraction, a negative or a non-number is refused with a *BudgetError.
func (t *Tier) clampTokens(req *jsonobj.Object, e *jsonobj.Edit) (*Clamp, error) {
	limit := int64(t.MaxOutputTokens)
	if limit <= 0 {
		return nil, nil
	}
	var clamp *Clamp
	present := false
	for _, f := range tokenFields {
		raw := req.Get(f)
		if raw == nil || string(raw) == "null" {
			continue
		}
		present = true
		n, plain, verdict := budgetValue(raw)
		if verdict != budgetOK {
			return nil, &BudgetError{Field: f, Negative: verdict == budgetNegative}
		}
		switch {
		case n > limit:
			if clamp == nil {
				clamp = &Clamp{Requested: n, Applied: limit}
			}
			e.Set(f, strconv.AppendInt(nil, limit, 10))
		case !plain:
			e.Set(f, strconv.AppendInt(nil, n, 10))
		}
	}
	if !present {
		e.Set("max_tokens", strconv.AppendInt(nil, limit, 10))
	}
	return clamp, nil
}

const (
	budgetOK = iota
	budgetNotInteger
	budgetNegative
)

// budgetValue reads a token budget. plain says raw is already a plain
// decimal integer. Integers too large for int64 come back as MaxInt64.
func budgetValue(raw []byte) (n int64, plain bool, verdict int) {
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		if n < 0 {
			return 0, true, budgetNegative
		}
		return n, true, budgetOK
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return 0, false, budgetNotInteger // string, bool, object, array
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil && !math.IsInf(f, 0) {
		return 0, false, budgetNotInteger
	}
	switch {
	case f < 0:
		return 0, false, budgetNegative
	case math.IsInf(f, 1) || f >= math.MaxInt64:
		return math.MaxInt64, false, budgetOK
	case f != math.Trunc(f):
		return 0, false, budgetNotInteger
	}
	return int64(f), false, budgetOK
}

// BudgetError refuses a token budget field that is not a non-negative
// integer: the serves' parsers would read "5000" or 5000.5 their own way,
// so the output cap could not be trusted to hold.
type BudgetError struct {
	Field    string
	Negative bool
}

func (e *BudgetError) Error() string {
	if e.Negative {
		return e.Field + " must not be negative"
	}
	return e.Field + " must be an integer (a JSON number, not a string or a fraction)"
}

// HasToolStructure reports whether an OpenAI chat request carries tools:
// declarations, a tool_choice, or tool turns in its history. A tier with
// tool_support = false cannot serve such a request.
func HasToolStructure(req *jsonobj.Object) bool {
	if v := req.Get("tools"); v != nil && !isEmptyJSON(v) {
		return true
	}
	if v := req.Get("tool_choice"); v != nil && string(v) != "null" {
		return true
	}
	msgs := req.Get("messages")
	if msgs == nil || !bytes.Contains(msgs, []byte("tool")) {
		return false // cheap exit for the common case
	}
	var history []struct {
		Role      string          `json:"role"`
		ToolCalls json.RawMessage `json:"tool_calls"`
	}
	if json.Unmarshal(msgs, &history) != nil {
		return false
	}
	for _, m := range history {
		if m.Role == "tool" || m.Role == "function" || (len(m.ToolCalls) > 0 && !isEmptyJSON(m.ToolCalls)) {
			return true
		}
	}
	return false
}

func isEmptyJSON(v []byte) bool {
	v = bytes.TrimSpace(v)
	switch string(v) {
	case "null", "[]", "{}":
		return true
	}
	return len(bytes.TrimSpace(bytes.Trim(v, "[]"))) == 0
}

func jsonUnmarshalString(raw []byte, dst *string) error { return json.Unmarshal(raw, dst) }

// OverContext reports whether the request's prompt exceeds the tier's
// context_limit, estimated without a tokenizer as max(whitespace-separated
// words, UTF-8 bytes / 4) over everything that goes into the prompt: the
// messages' text (system, user, assistant and tool results), the tool
// calls' names and arguments, and the tool definitions (and
// response_format's schema) as sent. Agents send tens of kilobytes of tool
// schemas and results, which the Python router's message-text estimate
// missed. Such a request is refused before the serve spends a prefill on
// it.
func (t *Tier) OverContext(req *jsonobj.Object) bool {
	msgs, tools, functions, format := req.Get("messages"), req.Get("tools"), req.Get("functions"), req.Get("response_format")
	// Words are at most half the bytes (plus one) and bytes/4 is smaller
	// still, so a short request cannot exceed the limit: skip decoding.
	if t.ContextLimit <= 0 || (len(msgs)+len(tools)+len(functions)+len(format))/2+1 <= t.ContextLimit {
		return false
	}
	var history []struct {
		Content          json.RawMessage `json:"content"`
		ReasoningContent string          `json:"reasoning_content"`
		ToolCalls        []struct {
			Function struct {
				Name      string `json:"name"`
				Arguments string `json:"arguments"`
			} `json:"function"`
		} `json:"tool_calls"`
	}
	if json.Unmarshal(msgs, &history) != nil {
		return false // the serve will say what is wrong with it
	}
	words, size := 0, 0
	count := func(s string) {
		words += len(strings.Fields(s))
		size += len(s)
	}
	for _, m := range history {
		var text string
		if json.Unmarshal(m.Content, &text) == nil {
			count(text)
		} else {
			var parts []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			if json.Unmarshal(m.Content, &parts) == nil {
				for _, p := range parts {
					if p.Type == "text" {
						count(p.Text)
					}
				}
			}
		}
		count(m.ReasoningContent)
		for _, c := range m.ToolCalls {
			count(c.Function.Name)
			count(c.Function.Arguments)
		}
	}
	// Definitions count as sent: a JSON schema is mostly punctuation and
	// short names, about bytes/4 tokens.
	for _, raw := range [][]byte{tools, functions, format} {
		count(string(raw))
	}
	return max(words, size/4) > t.ContextLimit
}

// ParseUsage reads prompt and completion token counts from an OpenAI usage
// object (zeros for anything missing or malformed).
func ParseUsage(raw []byte) (prompt, completion int) {
	return intField(raw, "prompt_tokens"), intField(raw, "completion_tokens")
}

// ParseUsageDetails reads the cached prompt tokens and the reasoning
// tokens of a usage object: OpenAI's prompt_tokens_details.cached_tokens
// and completion_tokens_details.reasoning_tokens, or Anthropic's
// cache_read_input_tokens (zeros for anything missing).
func ParseUsageDetails(raw []byte) (cached, reasoning int) {
	if s, e, ok := jsonobj.Find(raw, "prompt_tokens_details"); ok {
		cached = intField(raw[s:e], "cached_tokens")
	}
	if cached == 0 {
		cached = intField(raw, "cache_read_input_tokens")
	}
	if s, e, ok := jsonobj.Find(raw, "completion_tokens_details"); ok {
		reasoning = intField(raw[s:e], "reasoning_tokens")
	}
	return cached, reasoning
}

// ReplyUsageObject is the raw usage object of a non-streaming reply
// (nil when there is none).
func ReplyUsageObject(body []byte) []byte {
	if s, e, ok := jsonobj.Find(body, "usage"); ok && body[s] == '{' {
		return body[s:e]
	}
	return nil
}

// intField reads an integer member of a JSON object without decoding the
// rest: usage is read on every reply. Anything but an integer reads as 0.
func intField(obj []byte, key string) int {
	s, e, ok := jsonobj.Find(obj, key)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(string(obj[s:e]))
	if err != nil {
		return 0
	}
	return n
}

// ReplyUsage reads the usage of a non-streaming OpenAI reply.
func ReplyUsage(body []byte) (prompt, completion int) {
	if s, e, ok := jsonobj.Find(body, "usage"); ok {
		return ParseUsage(body[s:e])
	}
	return 0, 0
}
