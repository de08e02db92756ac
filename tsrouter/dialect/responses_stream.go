package dialect

import (
	"strconv"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// ResponsesStream turns an OpenAI chat.completion.chunk stream into
// Responses API SSE events, one upstream chunk at a time and without
// holding anything back: text, reasoning and tool-call argument fragments
// go out as they arrive.
//
// Events are those of the official API and carry the sequence_number the
// SDK types declare (from 0, +1 per event):
//
//	response.created, response.in_progress
//	per reasoning item: response.output_item.added, response.content_part.added
//	  (reasoning_text), response.reasoning_text.delta…, response.reasoning_text.done,
//	  response.content_part.done, response.output_item.done
//	per message item: response.output_item.added, response.content_part.added
//	  (output_text), response.output_text.delta…, response.output_text.done,
//	  response.content_part.done, response.output_item.done
//	per tool call: response.output_item.added (function_call, empty arguments),
//	  response.function_call_arguments.delta… (one per serve fragment),
//	  response.function_call_arguments.done, response.output_item.done
//	response.completed — or response.incomplete when cut at the length limit —
//	  with the full output and usage
//
// Items are numbered (output_index) in emission order. One item is open at
// a time: it is closed when an item of another kind, or another tool call,
// starts, or at Finish. Parallel tool calls are therefore separate items;
// a serve that returns to a call after the next one started breaks the
// protocol (ErrMalformedEvent) — vLLM and SGLang stream calls one after
// another. A reply with no output at all gets one empty message item.
//
// A ResponsesStream is not safe for concurrent use.
type ResponsesStream struct {
	head    responseHead
	info    RequestInfo
	seq     int
	started bool
	ended   bool

	items []respItem
	open  int // index in items of the open item, -1 if none
	// tools follow the serve's tool calls; toolState.block is the
	// call's item index, -1 until its output_item.added.
	tools []toolState
	// callIDs are the call_ids handed out, to keep them unique.
	callIDs map[string]bool

	finish string
	usage  respUsage
	gotUse bool
	est    estimator
	buf    []byte
}

// NewResponsesStream returns a translator whose response names info.Model
// (the caller's model string); info.InputTokens stands in if the serve
// reports no usage.
func NewResponsesStream(info RequestInfo) *ResponsesStream {
	return &ResponsesStream{
		head: newResponseHead(info.Model),
		info: info,
		open: -1,
		buf:  make([]byte, 0, 1024),
	}
}

// Start returns response.created and response.in_progress. The handler
// calls it once the serve's first event arrived; Chunk and Finish emit it
// themselves if it was not called. Later calls return nil.
func (t *ResponsesStream) Start() []byte {
	if t.started {
		return nil
	}
	saved := t.buf
	t.buf = nil
	t.appendStart()
	out := t.buf
	t.buf = saved
	return out
}

func (t *ResponsesStream) appendStart() {
	t.started = true
	for _, typ := range [...]string{"response.created", "response.in_progress"} {
		t.event(typ)
		t.buf = append(t.buf, `,"response":`...)
		t.buf = t.head.appendResponse(t.buf, statusInProgress, "", nil, nil)
		t.end()
	}
}

// event opens an event frame: "event: typ", then data with type and
// sequence_number; the caller appends the rest of the object and end.
func (t *ResponsesStream) event(typ string) {
	t.buf = append(t.buf, "event: "...)
	t.buf = append(t.buf, typ...)
	t.buf = append(t.buf, "\ndata: {\"type\":\""...)
	t.buf = append(t.buf, typ...)
	t.buf = append(t.buf, `","sequence_number":`...)
	t.buf = strconv.AppendInt(t.buf, int64(t.seq), 10)
	t.seq++
}

func (t *ResponsesStream) end() { t.buf = append(t.buf, "}\n\n"...) }

// itemRef appends the item_id and output_index members of item i.
func (t *ResponsesStream) itemRef(i int) {
	t.buf = append(t.buf, `,"item_id":"`...)
	t.buf = append(t.buf, t.items[i].id...)
	t.buf = append(t.buf, `","output_index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(i), 10)
}

// Chunk consumes the data payload of one upstream event and returns the
// events it yields (often none, e.g. for the role chunk). The returned
// slice is reused: it is valid until the next call. With an error it still
// returns the events produced before it, to be written before ErrorEvent.
func (t *ResponsesStream) Chunk(data []byte) ([]byte, error) {
	t.buf = t.buf[:0]
	if t.ended {
		return t.buf, nil // nothing may follow the terminal event
	}
	if !t.started {
		t.appendStart()
	}
	c, usage, skip, err := splitChunk(data)
	if skip || err != nil {
		return t.buf, err
	}
	if u, ok := parseRespUsage(usage); ok {
		t.usage, t.gotUse = u, true
	}
	if c != nil {
		if err := t.choice(c); err != nil {
			return t.buf, err
		}
	}
	return t.buf, nil
}

func (t *ResponsesStream) choice(c []byte) error {
	var delta, finish []byte
	it := jsonobj.MemberIter(c)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "delta":
			delta = v
		case "finish_reason":
			finish = v
		}
	}
	var content, reasoning, reasoningContent, calls []byte
	d := jsonobj.MemberIter(delta)
	for k, v, ok := d.Member(); ok; k, v, ok = d.Member() {
		switch string(k) {
		case "content":
			content = v
		case "reasoning":
			reasoning = v
		case "reasoning_content":
			reasoningContent = v
		case "tool_calls":
			calls = v
		}
	}
	// During vLLM's rename both reasoning keys may carry the same text;
	// one is enough.
	if !nonEmptyString(reasoningContent) {
		reasoningContent = reasoning
	}
	if nonEmptyString(reasoningContent) {
		t.textDelta(itemReasoning, reasoningContent)
	}
	if nonEmptyString(content) {
		t.textDelta(itemMessage, content)
	}
	if err := addToolCalls(&t.tools, t, calls, "its item was done"); err != nil {
		return err
	}
	if nonEmptyString(finish) {
		t.finish = string(finish[1 : len(finish)-1])
	}
	return nil
}

// textDelta appends a reasoning_text or output_text delta, opening an item
// of that kind if another one is open. s is the serve's JSON string,
// copied as is.
func (t *ResponsesStream) textDelta(kind itemKind, s []byte) {
	if t.open < 0 || t.items[t.open].kind != kind {
		t.closeOpen(statusCompleted)
		prefix := "msg_"
		if kind == itemReasoning {
			prefix = "rs_"
		}
		t.openItem(respItem{kind: kind, id: newID(prefix)})
		t.partEvent("response.content_part.added", t.open)
	}
	i := t.open
	inner := s[1 : len(s)-1]
	t.est.addRaw(inner)
	t.items[i].text = append(t.items[i].text, inner...)
	if kind == itemReasoning {
		t.event("response.reasoning_text.delta")
	} else {
		t.event("response.output_text.delta")
	}
	t.itemRef(i)
	t.buf = append(t.buf, `,"content_index":0,"delta":`...)
	t.buf = append(t.buf, s...)
	if kind == itemMessage {
		t.buf = append(t.buf, `,"logprobs":[]`...)
	}
	t.end()
}

// openItem appends it as the open item and announces it.
func (t *ResponsesStream) openItem(it respItem) {
	it.status = statusInProgress
	t.items = append(t.items, it)
	t.open = len(t.items) - 1
	t.event("response.output_item.added")
	t.buf = append(t.buf, `,"output_index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(t.open), 10)
	t.buf = append(t.buf, `,"item":`...)
	t.buf = t.items[t.open].appendJSON(t.buf, false)
	t.end()
}

// partEvent appends content_part.added (empty part) or content_part.done
// (the whole part) for item i.
func (t *ResponsesStream) partEvent(typ string, i int) {
	t.event(typ)
	t.itemRef(i)
	t.buf = append(t.buf, `,"content_index":0,"part":`...)
	if typ == "response.content_part.added" {
		saved := t.items[i].text
		t.items[i].text = nil
		t.buf = t.items[i].appendPart(t.buf)
		t.items[i].text = saved
	} else {
		t.buf = t.items[i].appendPart(t.buf)
	}
	t.end()
}

// closeOpen ends the open item with status: its done events, then
// response.output_item.done with the whole item.
func (t *ResponsesStream) closeOpen(status string) {
	if t.open < 0 {
		return
	}
	i := t.open
	t.open = -1
	it := &t.items[i]
	it.status = status
	switch it.kind {
	case itemMessage, itemReasoning:
		if it.kind == itemReasoning {
			t.event("response.reasoning_text.done")
		} else {
			t.event("response.output_text.done")
		}
		t.itemRef(i)
		t.buf = append(t.buf, `,"content_index":0,"text":"`...)
		t.buf = append(t.buf, it.text...)
		t.buf = append(t.buf, '"')
		if it.kind == itemMessage {
			t.buf = append(t.buf, `,"logprobs":[]`...)
		}
		t.end()
		t.partEvent("response.content_part.done", i)
	case itemCustom:
		t.closeCustom(i)
	case itemCall:
		for j := range t.tools {
			if t.tools[j].block == i {
				t.tools[j].closed = true
			}
		}
		t.event("response.function_call_arguments.done")
		t.itemRef(i)
		t.buf = append(t.buf, `,"name":`...)
		t.buf = append(t.buf, it.name...)
		t.buf = append(t.buf, `,"arguments":"`...)
		t.buf = append(t.buf, it.text...)
		t.buf = append(t.buf, `"`...)
		t.end()
	}
	t.event("response.output_item.done")
	t.buf = append(t.buf, `,"output_index":`...)
	t.buf = strconv.AppendInt(t.buf, int64(i), 10)
	t.buf = append(t.buf, `,"item":`...)
	t.buf = it.appendJSON(t.buf, true)
	t.end()
}

func (t *ResponsesStream) startTool(tc int) {
	s := &t.tools[tc]
	t.closeOpen(statusCompleted)
	callID := s.id
	if callID == nil || t.callIDs[string(callID)] {
		// call_id pairs the call with its output in the next request: it
		// must be unique (the SDK's accumulator checks).
		callID = appendString(nil, newID("call_"))
	}
	if t.callIDs == nil {
		t.callIDs = map[string]bool{}
	}
	t.callIDs[string(callID)] = true
	t.est.addRaw(s.name[1 : len(s.name)-1])
	item := respItem{kind: itemCall, id: newID("fc_"), callID: callID, name: s.name}
	// A custom tool's item is announced as one from the start; its
	// arguments are gathered and its input sent when the call is done.
	t.info.restoreTool(&item)
	t.openItem(item)
	s.block = t.open
}

// argsDelta appends a function_call_arguments.delta carrying a fragment:
// the serve's value (see appendArgs), or text already escaped.
func (t *ResponsesStream) argsDelta(args []byte, escaped bool) {
	i := t.open
	if t.items[i].kind == itemCustom {
		// The serve streams the JSON arguments {"input": "…"}; the
		// input itself is only known once they are complete.
		mark := len(t.buf)
		if escaped {
			t.buf = append(t.buf, args...)
		} else {
			t.buf = appendArgs(t.buf, args)
		}
		t.est.addRaw(t.buf[mark:])
		t.items[i].text = append(t.items[i].text, t.buf[mark:]...)
		t.buf = t.buf[:mark]
		return
	}
	t.event("response.function_call_arguments.delta")
	t.itemRef(i)
	t.buf = append(t.buf, `,"delta":"`...)
	mark := len(t.buf)
	if escaped {
		t.buf = append(t.buf, args...)
	} else {
		t.buf = appendArgs(t.buf, args)
	}
	frag := t.buf[mark:]
	t.est.addRaw(frag)
	t.items[i].text = append(t.items[i].text, frag...)
	t.buf = append(t.buf, '"')
	t.end()
}

// Finish closes the open item and returns the terminal event:
// response.completed, or response.incomplete with incomplete_details when
// the serve stopped at the length limit (the cut item is "incomplete"). It
// carries the whole output and the usage — the serve's, or estimates.
// Tool calls whose name never arrived are dropped: a function_call needs
// one. Later calls return nil.
func (t *ResponsesStream) Finish() []byte {
	if t.ended {
		return nil
	}
	t.ended = true
	// A fresh buffer: the last Chunk's result stays intact.
	t.buf = make([]byte, 0, 1024)
	if !t.started {
		t.appendStart()
	}
	incomplete := incompleteReason(t.finish)
	status := statusCompleted
	if incomplete != "" {
		status = statusIncomplete
	}
	t.closeOpen(status)
	if len(t.items) == 0 {
		t.openItem(respItem{kind: itemMessage, id: newID("msg_")})
		t.partEvent("response.content_part.added", t.open)
		t.closeOpen(status)
	}
	u := t.usage
	if !t.gotUse {
		u = respUsage{usageCounts: usageCounts{prompt: t.info.InputTokens, completion: t.est.tokens()}}
	}
	if status == statusIncomplete {
		t.event("response.incomplete")
	} else {
		t.event("response.completed")
	}
	t.buf = append(t.buf, `,"response":`...)
	t.buf = t.head.appendResponse(t.buf, status, incomplete, t.items, &u)
	t.end()
	return t.buf
}

// ErrorEvent returns the terminal error event for a stream that broke
// after the caller's 200, with its sequence_number.
// Nothing may follow it: no response.completed, so no client mistakes a
// cut answer for a finished one.
func (t *ResponsesStream) ErrorEvent() []byte {
	t.ended = true
	b := append([]byte(nil), "event: error\ndata: {\"type\":\"error\",\"sequence_number\":"...)
	b = strconv.AppendInt(b, int64(t.seq), 10)
	t.seq++
	return append(b, ",\"error\":{\"type\":\"upstream_error\",\"message\":\"stream interrupted\"}}\n\n"...)
}

// closeCustom ends a custom_tool_call item: its gathered arguments become
// the input, sent as one response.custom_tool_call_input.delta and the
// .done event, as the Responses API streams a free-form tool's input.
func (t *ResponsesStream) closeCustom(i int) {
	for j := range t.tools {
		if t.tools[j].block == i {
			t.tools[j].closed = true
		}
	}
	it := &t.items[i]
	it.text = customToFunctionArgs(unescapeArgs(it.text))
	if len(it.text) > 0 {
		t.event("response.custom_tool_call_input.delta")
		t.itemRef(i)
		t.buf = append(t.buf, `,"delta":"`...)
		t.buf = append(t.buf, it.text...)
		t.buf = append(t.buf, '"')
		t.end()
	}
	t.event("response.custom_tool_call_input.done")
	t.itemRef(i)
	t.buf = append(t.buf, `,"input":"`...)
	t.buf = append(t.buf, it.text...)
	t.buf = append(t.buf, '"')
	t.end()
}
