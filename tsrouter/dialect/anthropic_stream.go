package dialect

import (
	"errors"
	"strconv"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// Errors a stream translator returns for an event it cannot use. Either way
// the handler ends the caller's stream with ErrorEvent: a broken or failed
// stream must never reach the caller as a clean finish.
var (
	// ErrMalformedEvent: the event is not valid JSON, or breaks the
	// protocol (a tool call resumed after its block was closed).
	ErrMalformedEvent = errors.New("dialect: malformed upstream stream event")
	// ErrInBandError: the serve reported an error inside the stream.
	ErrInBandError = errors.New("dialect: upstream reported an error mid-stream")
)

// anthropicStreamError is the one terminal frame for a stream that broke
// after the 200 was committed: the status cannot change any more, so the
// failure is told in-band and the stream ends there.
const anthropicStreamError = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"stream interrupted\"}}\n\n"

type blockKind uint8

const (
	blockNone blockKind = iota
	blockText
	blockThinking
	blockTool
)

// StreamTranslator turns an OpenAI chat.completion.chunk stream into
// Anthropic Messages SSE events, one upstream chunk at a time and without
// holding anything back: text, thinking and tool-call argument fragments go
// out as they arrive.
//
// Blocks are numbered from 0 in emission order. A block stays open until a
// block of another kind (or another tool call) starts, or until Finish;
// then it gets its content_block_stop. Since an Anthropic block cannot be
// reopened, a serve that goes back to an earlier tool call's arguments
// after another block started is a protocol error (no known serve does;
// vLLM and SGLang stream calls one after another).
//
// A StreamTranslator is not safe for concurrent use.
type StreamTranslator struct {
	model   []byte // the caller's model as a JSON string
	id      string
	info    RequestInfo
	started bool
	ended   bool

	next    int // index the next block gets
	open    blockKind
	openIdx int
	openTC  int // the open block's position in tools (blockTool)

	tools   []toolState
	finish  string
	stopSeq []byte // raw JSON string of the matched stop, if any
	usage   usageCounts
	gotUse  bool
	est     estimator // output estimate, used only without usage
	buf     []byte
}

// toolState follows one upstream tool call (one tool_calls index).
type toolState struct {
	upstream int
	block    int // our block index; -1 until its content_block_start
	closed   bool
	id, name []byte // raw JSON strings, kept until the block can start
	args     []byte // escaped fragments that arrived before the name
}

// NewAnthropicStream returns a translator whose events name model (the
// caller's model string) and whose message_start reports info.InputTokens.
func NewAnthropicStream(model string, info RequestInfo) *StreamTranslator {
	return &StreamTranslator{
		model: appendString(nil, model),
		id:    newID("msg_"),
		info:  info,
		buf:   make([]byte, 0, 1024),
	}
}

// Start returns message_start and a ping. The handler calls it once the
// serve's first event arrived (so nothing is committed for a serve that
// fails first); Chunk and Finish emit it themselves if it was not called.
// Later calls return nil.
func (t *StreamTranslator) Start() []byte {
	if t.started {
		return nil
	}
	return t.appendStart(nil)
}

func (t *StreamTranslator) appendStart(b []byte) []byte {
	t.started = true
	b = append(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\""...)
	b = append(b, t.id...)
	b = append(b, "\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"...)
	b = append(b, t.model...)
	b = append(b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":"...)
	b = strconv.AppendInt(b, int64(t.info.InputTokens), 10)
	b = append(b, ",\"output_tokens\":0}}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"...)
	return b
}

// Chunk consumes the data payload of one upstream event and returns the
// Anthropic events it yields (often none, e.g. for the role chunk). The
// returned slice is reused: it is valid until the next call. With an error
// it still returns the events produced before it (such as message_start),
// to be written before ErrorEvent.
func (t *StreamTranslator) Chunk(data []byte) ([]byte, error) {
	t.buf = t.buf[:0]
	if t.ended {
		return t.buf, nil // nothing may follow message_stop or error
	}
	if !t.started {
		t.buf = t.appendStart(t.buf)
	}
	c, usage, skip, err := splitChunk(data)
	if skip || err != nil {
		return t.buf, err
	}
	if u, ok := parseUsage(usage); ok {
		t.usage, t.gotUse = u, true
	}
	if c != nil {
		if err := t.choice(c); err != nil {
			return t.buf, err
		}
	}
	return t.buf, nil
}

// splitChunk checks one OpenAI chunk payload and returns its first choice
// and its usage object (nil when absent). skip reports an empty payload or
// [DONE]; err is ErrMalformedEvent for anything but a JSON object, or
// ErrInBandError when the serve reports an error in the stream.
func splitChunk(data []byte) (choice, usage []byte, skip bool, err error) {
	data = data[jsonobj.SkipSpace(data, 0):]
	if string(data) == "[DONE]" || len(data) == 0 {
		return nil, nil, true, nil
	}
	if !jsonobj.Valid(data) || data[0] != '{' {
		return nil, nil, false, ErrMalformedEvent
	}
	var choices []byte
	it := jsonobj.MemberIter(data)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "choices":
			choices = v
		case "usage":
			usage = v
		case "error":
			if string(v) != "null" {
				return nil, nil, false, ErrInBandError
			}
		case "object":
			if string(v) == `"error"` {
				return nil, nil, false, ErrInBandError
			}
		}
	}
	return firstChoice(choices), usage, false, nil
}

// firstChoice returns choice index 0 (or the first one): the router never
// asks for n > 1.
func firstChoice(choices []byte) []byte {
	var first []byte
	it := jsonobj.ElementIter(choices)
	for el, ok := it.Element(); ok; el, ok = it.Element() {
		m := jsonobj.MemberIter(el)
		for k, v, ok := m.Member(); ok; k, v, ok = m.Member() {
			if string(k) == "index" {
				if string(v) == "0" {
					return el
				}
				break
			}
		}
		if first == nil {
			first = el
		}
	}
	return first
}

func (t *StreamTranslator) choice(c []byte) error {
	var delta, finish []byte
	it := jsonobj.MemberIter(c)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "delta":
			delta = v
		case "finish_reason":
			finish = v
		case "stop_reason", "matched_stop":
			if nonEmptyString(v) {
				t.stopSeq = append(t.stopSeq[:0], v...)
			}
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
		t.delta(blockThinking, "thinking_delta\",\"thinking\":", reasoningContent)
	}
	if nonEmptyString(content) {
		t.delta(blockText, "text_delta\",\"text\":", content)
	}
	if err := addToolCalls(&t.tools, t, calls, "its block closed"); err != nil {
		return err
	}
	if nonEmptyString(finish) {
		t.finish = string(finish[1 : len(finish)-1])
	}
	return nil
}

// delta appends a text or thinking delta, opening a block of that kind if
// another one is open. str is the serve's JSON string, copied as is: it is
// already escaped, so no decode/encode round trip.
func (t *StreamTranslator) delta(kind blockKind, deltaHead string, str []byte) {
	if t.open != kind {
		t.closeOpen()
		t.openBlock(kind)
		if kind == blockText {
			t.buf = append(t.buf, `{"type":"text","text":""}}`+"\n\n"...)
		} else {
			t.buf = append(t.buf, `{"type":"thinking","thinking":"","signature":""}}`+"\n\n"...)
		}
	}
	t.est.addRaw(str[1 : len(str)-1])
	t.appendDeltaHead()
	t.buf = append(t.buf, deltaHead...)
	t.buf = append(t.buf, str...)
	t.buf = append(t.buf, "}}\n\n"...)
}

// openBlock starts a block of kind at the next index, leaving the buffer
// where its content_block object goes.
func (t *StreamTranslator) openBlock(kind blockKind) {
	t.open, t.openIdx = kind, t.next
	t.next++
	t.buf = append(t.buf, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
	t.buf = strconv.AppendInt(t.buf, int64(t.openIdx), 10)
	t.buf = append(t.buf, ",\"content_block\":"...)
}

func (t *StreamTranslator) appendDeltaHead() {
	t.buf = append(t.buf, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
	t.buf = strconv.AppendInt(t.buf, int64(t.openIdx), 10)
	t.buf = append(t.buf, ",\"delta\":{\"type\":\""...)
}

func (t *StreamTranslator) closeOpen() {
	if t.open == blockNone {
		return
	}
	if t.open == blockTool {
		t.tools[t.openTC].closed = true
	}
	t.buf = append(t.buf, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
	t.buf = strconv.AppendInt(t.buf, int64(t.openIdx), 10)
	t.buf = append(t.buf, "}\n\n"...)
	t.open = blockNone
}

// appendArgs appends an arguments fragment as escaped string content: a
// JSON string's inside as it came, or an object (some serves send one)
// encoded as string text.
func appendArgs(dst, args []byte) []byte {
	if isString(args) {
		return append(dst, args[1:len(args)-1]...)
	}
	return appendEscaped(dst, args)
}

func (t *StreamTranslator) startTool(tc int) {
	s := &t.tools[tc]
	t.closeOpen()
	t.openBlock(blockTool)
	t.openTC = tc
	s.block = t.openIdx
	t.buf = append(t.buf, `{"type":"tool_use","id":`...)
	if s.id != nil {
		t.buf = append(t.buf, s.id...)
	} else {
		t.buf = appendString(t.buf, newID("toolu_"))
	}
	t.buf = append(t.buf, `,"name":`...)
	t.buf = append(t.buf, s.name...)
	t.buf = append(t.buf, `,"input":{}}}`+"\n\n"...)
	t.est.addRaw(s.name[1 : len(s.name)-1])
}

// argsDelta appends an input_json_delta carrying an arguments fragment:
// the serve's value (see appendArgs), or text already escaped.
func (t *StreamTranslator) argsDelta(args []byte, escaped bool) {
	t.appendDeltaHead()
	t.buf = append(t.buf, "input_json_delta\",\"partial_json\":\""...)
	mark := len(t.buf)
	if escaped {
		t.buf = append(t.buf, args...)
	} else {
		t.buf = appendArgs(t.buf, args)
	}
	t.est.addRaw(t.buf[mark:])
	t.buf = append(t.buf, "\"}}\n\n"...)
}

// Finish closes the open block and returns message_delta (stop reason,
// stop sequence, usage) and message_stop. A reply with no block at all gets
// an empty text block, so content is never empty. Tool calls whose name
// never arrived are dropped: a tool_use needs one. Later calls return nil.
func (t *StreamTranslator) Finish() []byte {
	if t.ended {
		return nil
	}
	t.ended = true
	// A fresh buffer: the last Chunk's result stays intact, and the
	// translator is done with its own.
	t.buf = make([]byte, 0, 512)
	if !t.started {
		t.buf = t.appendStart(t.buf)
	}
	t.closeOpen()
	if t.next == 0 {
		t.openBlock(blockText)
		t.buf = append(t.buf, `{"type":"text","text":""}}`+"\n\n"...)
		t.closeOpen()
	}
	hasTools := false
	for _, s := range t.tools {
		hasTools = hasTools || s.block >= 0
	}
	stop := anthropicStopReason(t.finish, t.stopSeq != nil, hasTools)
	b := append(t.buf, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\""...)
	b = append(b, stop...)
	b = append(b, "\",\"stop_sequence\":"...)
	if stop == "stop_sequence" {
		b = append(b, t.stopSeq...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, "},\"usage\":{"...)
	if t.gotUse {
		// The serve's real counts; input_tokens corrects message_start's
		// estimate (the SDKs take it from message_delta when present).
		u := t.usage.anthropic()
		b = append(b, "\"input_tokens\":"...)
		b = strconv.AppendInt(b, int64(u.InputTokens), 10)
		b = append(b, ",\"output_tokens\":"...)
		b = strconv.AppendInt(b, int64(u.OutputTokens), 10)
		if u.CacheReadInputTokens != nil {
			b = append(b, ",\"cache_read_input_tokens\":"...)
			b = strconv.AppendInt(b, int64(*u.CacheReadInputTokens), 10)
		}
	} else {
		b = append(b, "\"output_tokens\":"...)
		b = strconv.AppendInt(b, int64(t.est.tokens()), 10)
	}
	return append(b, "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
}

// ErrorEvent returns the terminal error event for a stream that broke after
// the caller's 200. Nothing may follow it: no message_stop, so no client
// mistakes a cut answer for a finished one.
func (t *StreamTranslator) ErrorEvent() []byte {
	t.ended = true
	return []byte(anthropicStreamError)
}
