package dialect

import (
	"strconv"
	"time"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// openaiStreamError is the terminal frame for an OpenAI-dialect stream that
// broke after the 200: the status is already sent, so the failure can only
// be told in-band, and no [DONE] follows it (a client must not take a cut
// answer for a finished one).
const openaiStreamError = "data: {\"error\":{\"type\":\"upstream_error\",\"message\":\"stream interrupted\"}}\n\n"

// OpenAIStream turns an Anthropic Messages event stream into OpenAI
// chat.completion.chunk events, one upstream event at a time: text deltas
// become content, thinking deltas reasoning_content, and tool_use blocks
// tool_calls whose arguments are streamed fragment by fragment as the
// input_json_delta events arrive.
//
// An OpenAIStream is not safe for concurrent use.
type OpenAIStream struct {
	// head is every chunk's opening up to and including `"model":M,`.
	head    []byte
	info    RequestInfo
	started bool
	ended   bool

	blocks []streamBlock
	tools  int // tool calls so far: the next one's OpenAI index
	stop   string
	// stopSeq is the stop string (raw JSON) message_delta named.
	stopSeq []byte
	usage   anthropicCounts
	gotUse  bool
	est     estimator
	buf     []byte
}

// streamBlock maps an Anthropic block index to what it carries.
type streamBlock struct {
	index int
	kind  blockKind
	tool  int // OpenAI tool_calls index (blockTool)
}

// NewOpenAIStream returns a translator whose chunks name model (the
// caller's string). info.IncludeUsage decides whether Finish sends the
// usage chunk; info.InputTokens stands in if the serve reports no usage.
func NewOpenAIStream(model string, info RequestInfo) *OpenAIStream {
	h := append([]byte(`{"id":"`), newID("chatcmpl-")...)
	h = append(h, `","object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, time.Now().Unix(), 10)
	h = append(h, `,"model":`...)
	h = appendString(h, model)
	h = append(h, ',')
	return &OpenAIStream{head: h, info: info, buf: make([]byte, 0, 1024)}
}

// Start returns the role chunk. Event and Finish send it themselves if it
// was not called; later calls return nil.
func (s *OpenAIStream) Start() []byte {
	if s.started {
		return nil
	}
	return s.appendStart(nil)
}

func (s *OpenAIStream) appendStart(b []byte) []byte {
	s.started = true
	saved := s.buf // delta writes to s.buf
	s.buf = b
	s.delta(`{"role":"assistant","content":""}`, "")
	b, s.buf = s.buf, saved
	return b
}

// delta appends a chunk whose delta is the JSON object d and whose
// finish_reason is finish (null when "").
func (s *OpenAIStream) delta(d string, finish string) {
	s.deltaHead()
	s.buf = append(s.buf, d...)
	s.deltaTail(finish)
}

func (s *OpenAIStream) deltaHead() {
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, s.head...)
	s.buf = append(s.buf, `"choices":[{"index":0,"delta":`...)
}

func (s *OpenAIStream) deltaTail(finish string) {
	s.buf = append(s.buf, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		s.buf = append(s.buf, "null"...)
	} else {
		s.buf = appendString(s.buf, finish)
	}
	s.buf = append(s.buf, "}]}\n\n"...)
}

// Event consumes the data payload of one Anthropic event and returns the
// OpenAI chunks it yields (often none: pings, block stops). The returned
// slice is reused: it is valid until the next call. An error event from
// the serve yields ErrInBandError; events produced before an error are
// still returned, to be written before ErrorEvent.
func (s *OpenAIStream) Event(data []byte) ([]byte, error) {
	s.buf = s.buf[:0]
	if s.ended {
		return s.buf, nil // nothing may follow [DONE] or the error frame
	}
	if !s.started {
		s.buf = s.appendStart(s.buf)
	}
	data = data[jsonobj.SkipSpace(data, 0):]
	if len(data) == 0 {
		return s.buf, nil
	}
	if !jsonobj.Valid(data) || data[0] != '{' {
		return s.buf, ErrMalformedEvent
	}
	var typ, index, block, delta, message, usage []byte
	it := jsonobj.MemberIter(data)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "type":
			typ = v
		case "index":
			index = v
		case "content_block":
			block = v
		case "delta":
			delta = v
		case "message":
			message = v
		case "usage":
			usage = v
		}
	}
	switch string(typ) {
	case `"message_start"`:
		m := jsonobj.MemberIter(message)
		for k, v, ok := m.Member(); ok; k, v, ok = m.Member() {
			if string(k) == "usage" && isObject(v) {
				s.usage.merge(v)
				s.gotUse = true
			}
		}
	case `"content_block_start"`:
		n, _ := atoi(index)
		s.blockStart(n, block)
	case `"content_block_delta"`:
		n, _ := atoi(index)
		s.blockDelta(n, delta)
	case `"message_delta"`:
		d := jsonobj.MemberIter(delta)
		for k, v, ok := d.Member(); ok; k, v, ok = d.Member() {
			switch {
			case string(k) == "stop_reason" && nonEmptyString(v):
				s.stop = string(v[1 : len(v)-1])
			case string(k) == "stop_sequence" && nonEmptyString(v):
				s.stopSeq = append(s.stopSeq[:0], v...)
			}
		}
		if isObject(usage) {
			s.usage.merge(usage)
			s.gotUse = true
		}
	case `"error"`:
		return s.buf, ErrInBandError
	}
	return s.buf, nil
}

func (s *OpenAIStream) blockStart(index int, block []byte) {
	var typ, id, name, text, input []byte
	it := jsonobj.MemberIter(block)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "type":
			typ = v
		case "id":
			id = v
		case "name":
			name = v
		case "text":
			text = v
		case "input":
			input = v
		}
	}
	b := streamBlock{index: index}
	switch string(typ) {
	case `"text"`:
		b.kind = blockText
		if nonEmptyString(text) {
			s.content(`{"content":`, text)
		}
	case `"thinking"`:
		b.kind = blockThinking
	case `"tool_use"`:
		if !nonEmptyString(name) {
			break
		}
		b.kind, b.tool = blockTool, s.tools
		s.tools++
		s.deltaHead()
		s.buf = append(s.buf, `{"tool_calls":[{"index":`...)
		s.buf = strconv.AppendInt(s.buf, int64(b.tool), 10)
		s.buf = append(s.buf, `,"id":`...)
		if nonEmptyString(id) {
			s.buf = append(s.buf, id...)
		} else {
			s.buf = appendString(s.buf, newID("call_"))
		}
		s.buf = append(s.buf, `,"type":"function","function":{"name":`...)
		s.buf = append(s.buf, name...)
		s.buf = append(s.buf, `,"arguments":""}}]}`...)
		s.deltaTail("")
		s.est.addRaw(name[1 : len(name)-1])
		// Anthropic starts tool_use with input {} and streams the rest,
		// but a serve may put the whole input here instead.
		if isObject(input) && len(compactJSON(input)) > 2 {
			s.arguments(b.tool, input)
		}
	}
	s.blocks = append(s.blocks, b)
}

func (s *OpenAIStream) blockDelta(index int, delta []byte) {
	var b *streamBlock
	for i := range s.blocks {
		if s.blocks[i].index == index {
			b = &s.blocks[i]
			break
		}
	}
	if b == nil {
		return
	}
	var text, thinking, partial []byte
	it := jsonobj.MemberIter(delta)
	for k, v, ok := it.Member(); ok; k, v, ok = it.Member() {
		switch string(k) {
		case "text":
			text = v
		case "thinking":
			thinking = v
		case "partial_json":
			partial = v
		}
	}
	switch {
	case b.kind == blockText && nonEmptyString(text):
		s.content(`{"content":`, text)
	case b.kind == blockThinking && nonEmptyString(thinking):
		s.content(`{"reasoning_content":`, thinking)
	case b.kind == blockTool && nonEmptyString(partial):
		s.arguments(b.tool, partial)
	}
}

// content appends a chunk whose delta is {key: str}, str being the serve's
// JSON string copied as is.
func (s *OpenAIStream) content(open string, str []byte) {
	s.est.addRaw(str[1 : len(str)-1])
	s.deltaHead()
	s.buf = append(s.buf, open...)
	s.buf = append(s.buf, str...)
	s.buf = append(s.buf, '}')
	s.deltaTail("")
}

// arguments appends a tool_calls delta carrying an arguments fragment (a
// JSON string as it came, or an object encoded as one).
func (s *OpenAIStream) arguments(tool int, frag []byte) {
	s.deltaHead()
	s.buf = append(s.buf, `{"tool_calls":[{"index":`...)
	s.buf = strconv.AppendInt(s.buf, int64(tool), 10)
	s.buf = append(s.buf, `,"function":{"arguments":"`...)
	mark := len(s.buf)
	s.buf = appendArgs(s.buf, frag)
	s.est.addRaw(s.buf[mark:])
	s.buf = append(s.buf, `"}}]}`...)
	s.deltaTail("")
}

// Finish returns the final chunk (empty delta, mapped finish_reason), the
// usage chunk if the caller asked for it (real counts, else estimates),
// and "data: [DONE]". Later calls return nil.
func (s *OpenAIStream) Finish() []byte {
	if s.ended {
		return nil
	}
	s.ended = true
	s.buf = make([]byte, 0, 512) // leave the last Event's result intact
	if !s.started {
		s.buf = s.appendStart(s.buf)
	}
	finish := openaiFinishReason(s.stop, s.tools > 0)
	if s.stop == "stop_sequence" && s.stopSeq != nil {
		// vLLM's shape: the matched stop string beside finish_reason.
		s.deltaHead()
		s.buf = append(s.buf, `{},"logprobs":null,"finish_reason":`...)
		s.buf = appendString(s.buf, finish)
		s.buf = append(s.buf, `,"stop_reason":`...)
		s.buf = append(s.buf, s.stopSeq...)
		s.buf = append(s.buf, "}]}\n\n"...)
	} else {
		s.delta("{}", finish)
	}
	if s.info.IncludeUsage {
		u := s.usage
		if !s.gotUse {
			u = anthropicCounts{input: s.info.InputTokens, output: s.est.tokens()}
		}
		s.buf = append(s.buf, "data: "...)
		s.buf = append(s.buf, s.head...)
		s.buf = append(s.buf, `"choices":[],"usage":`...)
		s.buf = append(s.buf, marshal(u.openai())...)
		s.buf = append(s.buf, "}\n\n"...)
	}
	return append(s.buf, "data: [DONE]\n\n"...)
}

// ErrorEvent returns the terminal error frame for a stream that broke
// after the caller's 200; nothing may follow it (no [DONE]).
func (s *OpenAIStream) ErrorEvent() []byte {
	s.ended = true
	return []byte(openaiStreamError)
}
