package dialect

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// This file renders Responses objects — output items, usage, the response
// itself — for both the non-streaming reply and the stream's events, so the
// two cannot drift apart. Text is kept as escaped JSON string content (the
// serve's bytes, or appendEscaped's), written without a decode/encode
// round trip.

type itemKind uint8

const (
	itemMessage itemKind = iota + 1
	itemReasoning
	itemCall
	// itemCustom is a custom_tool_call: text is its input.
	itemCustom
)

// Item statuses.
const (
	statusInProgress = "in_progress"
	statusCompleted  = "completed"
	statusIncomplete = "incomplete"
)

// respItem is one output item.
type respItem struct {
	kind   itemKind
	id     string // msg_…, rs_… or fc_…
	text   []byte // escaped content: message text, reasoning text or call arguments
	callID []byte // function_call: call_id as a JSON string
	name   []byte // function_call: name as a JSON string
	// namespace is a namespaced function_call's namespace as a JSON
	// string, nil otherwise.
	namespace []byte
	status    string
}

// appendJSON appends the item. Without full it is the item as
// response.output_item.added announces it: no content yet, empty
// arguments.
func (it *respItem) appendJSON(b []byte, full bool) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, it.id...)
	switch it.kind {
	case itemMessage:
		b = append(b, `","type":"message","status":"`...)
		b = append(b, it.status...)
		b = append(b, `","role":"assistant","content":[`...)
		if full {
			b = it.appendPart(b)
		}
		return append(b, "]}"...)
	case itemReasoning:
		b = append(b, `","type":"reasoning","status":"`...)
		b = append(b, it.status...)
		b = append(b, `","summary":[],"content":[`...)
		if full {
			b = it.appendPart(b)
		}
		return append(b, "]}"...)
	case itemCustom:
		b = append(b, `","type":"custom_tool_call","status":"`...)
		b = append(b, it.status...)
		b = append(b, `","call_id":`...)
		b = append(b, it.callID...)
		b = append(b, `,"name":`...)
		b = append(b, it.name...)
		b = append(b, `,"input":"`...)
		if full {
			b = append(b, it.text...)
		}
		return append(b, `"}`...)
	default:
		b = append(b, `","type":"function_call","status":"`...)
		b = append(b, it.status...)
		b = append(b, `","arguments":"`...)
		if full {
			b = append(b, it.text...)
		}
		b = append(b, `","call_id":`...)
		b = append(b, it.callID...)
		b = append(b, `,"name":`...)
		b = append(b, it.name...)
		if it.namespace != nil {
			b = append(b, `,"namespace":`...)
			b = append(b, it.namespace...)
		}
		return append(b, '}')
	}
}

// appendPart appends the item's one content part (message and reasoning
// items): output_text with the empty annotations and logprobs the SDK
// types declare, or reasoning_text.
func (it *respItem) appendPart(b []byte) []byte {
	if it.kind == itemReasoning {
		b = append(b, `{"type":"reasoning_text","text":"`...)
		b = append(b, it.text...)
		return append(b, `"}`...)
	}
	b = append(b, `{"type":"output_text","text":"`...)
	b = append(b, it.text...)
	return append(b, `","annotations":[],"logprobs":[]}`...)
}

// respUsage is a serve's usage in Responses terms. OpenAI's input_tokens
// includes cached tokens, as prompt_tokens does, so no arithmetic is
// needed; a detail the serve did not report is omitted, never zero-filled.
type respUsage struct {
	usageCounts
	reasoning    int
	hasReasoning bool
}

// parseRespUsage reads an OpenAI usage object, including
// completion_tokens_details.reasoning_tokens when a serve reports it.
func parseRespUsage(raw []byte) (respUsage, bool) {
	u, ok := parseUsage(raw)
	if !ok {
		return respUsage{}, false
	}
	r := respUsage{usageCounts: u}
	it := jsonobj.MemberIter(raw)
	for k, v, more := it.Member(); more; k, v, more = it.Member() {
		if string(k) != "completion_tokens_details" {
			continue
		}
		d := jsonobj.MemberIter(v)
		for k, v, more := d.Member(); more; k, v, more = d.Member() {
			if string(k) == "reasoning_tokens" {
				r.reasoning, r.hasReasoning = atoi(v)
			}
		}
	}
	return r, true
}

func (u *respUsage) appendJSON(b []byte) []byte {
	b = append(b, `{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt), 10)
	if u.hasCached {
		b = append(b, `,"input_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, int64(min(u.cached, u.prompt)), 10)
		b = append(b, '}')
	}
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(u.completion), 10)
	if u.hasReasoning {
		b = append(b, `,"output_tokens_details":{"reasoning_tokens":`...)
		b = strconv.AppendInt(b, int64(u.reasoning), 10)
		b = append(b, '}')
	}
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(u.prompt+u.completion), 10)
	return append(b, '}')
}

// responseHead is what every rendering of one response shares.
type responseHead struct {
	id      string
	created int64
	model   []byte // the caller's model as a JSON string
}

func newResponseHead(model string) responseHead {
	return responseHead{id: newID("resp_"), created: time.Now().Unix(), model: appendString(nil, model)}
}

// appendResponse appends the response object. usage nil renders null (a
// response still in progress); incomplete, if set, is the
// incomplete_details reason.
func (h *responseHead) appendResponse(b []byte, status, incomplete string, items []respItem, usage *respUsage) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, h.id...)
	b = append(b, `","object":"response","created_at":`...)
	b = strconv.AppendInt(b, h.created, 10)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","error":null,"incomplete_details":`...)
	if incomplete != "" {
		b = append(b, `{"reason":"`...)
		b = append(b, incomplete...)
		b = append(b, `"}`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"model":`...)
	b = append(b, h.model...)
	b = append(b, `,"output":[`...)
	for i := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = items[i].appendJSON(b, true)
	}
	b = append(b, `],"usage":`...)
	if usage == nil {
		return append(b, "null}"...)
	}
	b = usage.appendJSON(b)
	return append(b, '}')
}

// incompleteReason maps a finish_reason to the Responses
// incomplete_details reason, "" for a completed response.
func incompleteReason(finish string) string {
	switch finish {
	case "length", "max_tokens", "model_length":
		return "max_output_tokens"
	case "content_filter":
		return "content_filter"
	}
	return ""
}

// OpenAIResponseToResponses translates a non-streaming chat.completion into
// a Responses object whose model is info.Model, the caller's string:
// reasoning (vLLM's "reasoning", SGLang's "reasoning_content") becomes a
// reasoning item, then the text a message item, then one function_call
// item per tool call (id and arguments kept as the serve sent them; a
// missing id is synthesized). A reply cut at the length limit is status
// "incomplete" with incomplete_details {reason: "max_output_tokens"}, its
// last item "incomplete". A reply without usage reports the estimated
// input (info.InputTokens) and output tokens.
func OpenAIResponseToResponses(body []byte, info RequestInfo) ([]byte, error) {
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
	var items []respItem
	var est estimator
	reasoning := str(msg.ReasoningContent)
	if reasoning == "" {
		reasoning = str(msg.Reasoning)
	}
	if reasoning != "" {
		items = append(items, respItem{kind: itemReasoning, id: newID("rs_"), text: appendEscaped(nil, reasoning), status: statusCompleted})
		est.add(reasoning)
	}
	text := messageText(msg.Content)
	if text != "" {
		items = append(items, respItem{kind: itemMessage, id: newID("msg_"), text: appendEscaped(nil, text), status: statusCompleted})
		est.add(text)
	}
	seen := map[string]bool{}
	for _, raw := range msg.ToolCalls {
		var tc chatToolCallIn
		if json.Unmarshal(raw, &tc) != nil || tc.Function.Name == "" {
			continue
		}
		var args []byte
		switch {
		case isString(tc.Function.Arguments):
			args = tc.Function.Arguments[1 : len(tc.Function.Arguments)-1]
		case isObject(tc.Function.Arguments):
			args = appendEscaped(nil, compactJSON(tc.Function.Arguments))
		}
		id := tc.ID
		if id == "" || seen[id] {
			// call_id identifies the call when its output comes back:
			// it must be unique (the SDK's accumulator checks).
			id = newID("call_")
		}
		seen[id] = true
		item := respItem{kind: itemCall, id: newID("fc_"), text: args, callID: appendString(nil, id), name: appendString(nil, tc.Function.Name), status: statusCompleted}
		info.restoreTool(&item)
		items = append(items, item)
		est.add(tc.Function.Name)
		est.addRaw(args)
	}
	if len(items) == 0 {
		items = append(items, respItem{kind: itemMessage, id: newID("msg_"), status: statusCompleted})
	}
	incomplete := incompleteReason(str(ch.FinishReason))
	status := statusCompleted
	if incomplete != "" {
		status = statusIncomplete
		items[len(items)-1].status = statusIncomplete
	}
	u, ok := parseRespUsage(cc.Usage)
	if !ok {
		u.prompt, u.completion = info.InputTokens, est.tokens()
	}
	head := newResponseHead(info.Model)
	return head.appendResponse(nil, status, incomplete, items, &u), nil
}

// restoreTool renames a call of a function that stands for a namespace
// member (name and namespace as declared) or a custom tool (a
// custom_tool_call whose input is the "input" argument). it.text holds
// the escaped arguments.
func (info *RequestInfo) restoreTool(it *respItem) {
	origin, ok := info.ToolOrigins[str(it.name)]
	if !ok {
		return
	}
	it.name = appendString(nil, origin.Name)
	if origin.Custom {
		it.kind = itemCustom
		it.id = "ctc_" + it.id[len("fc_"):]
		it.text = customToFunctionArgs(unescapeArgs(it.text))
		return
	}
	it.namespace = appendString(nil, origin.Namespace)
}
