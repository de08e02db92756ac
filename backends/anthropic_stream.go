package backends

import (
	"bytes"
	"io"
	"time"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// An Anthropic-dialect serve streams "event: T" + "data: {…"type":"T"…}"
// events and ends with message_stop instead of [DONE]. The Stream reads
// them with the same reader, watchdog and first-event gate as an OpenAI
// stream; what differs is here: the error event, the end marker, where
// usage and the model sit. Next returns the serve's own events (for an
// Anthropic caller, relayed by RelayAnthropic) or, after
// TranslateToOpenAI, OpenAI chat chunks (for everything that consumes
// OpenAI streams).

// The members of an Anthropic event payload the reader looks at.
var anthropicKeys = [...]string{"type", "message", "delta", "usage", "error"}

const (
	akType = iota
	akMessage
	akDelta
	akUsage
	akError
)

// messageStopEvent ends a relayed stream whose serve finished (sent its
// stop_reason) but closed without message_stop.
const messageStopEvent = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

// ChunkTranslator turns an Anthropic Messages event stream into OpenAI
// chat.completion.chunk frames; tsrouter/dialect's OpenAIStream is one.
type ChunkTranslator interface {
	// Event returns the frames ("data: {…}\n\n", zero or more) that one
	// event's data payload yields, valid until the next call.
	Event(data []byte) ([]byte, error)
	// Finish returns the closing frames, ending with "data: [DONE]\n\n".
	Finish() []byte
}

// TranslateToOpenAI makes Next return the OpenAI chunks tr makes of the
// serve's events, so relays and translators written for OpenAI streams
// consume an Anthropic tier unchanged. It applies only to streams from
// Anthropic-dialect tiers and must be called before the first Next.
func (s *Stream) TranslateToOpenAI(tr ChunkTranslator) {
	if s.anthropic {
		s.tr = tr
	}
}

// firstAnthropic gates an Anthropic stream on its first event (OpenStream):
// an error event there — overloaded_error above all — is classified like
// the HTTP status it stands for, and nothing has been sent to the caller.
func (s *Stream) firstAnthropic() (*Stream, error) {
	if err := s.scanAnthropic(); err != nil {
		s.Close()
		return nil, failed("serve's first event is malformed")
	}
	if s.isAnthropicError() {
		s.Close()
		return nil, classifyAnthropicInband(s.data)
	}
	s.first = true
	return s, nil
}

func (s *Stream) scanAnthropic() error {
	return jsonobj.Members(s.data, anthropicKeys[:], s.aspans[:])
}

// aType is the current event's raw "type" value (a JSON string), or nil.
func (s *Stream) aType() []byte {
	t := s.aspans[akType]
	if !t.Found() {
		return nil
	}
	return s.data[t.Start:t.End]
}

func (s *Stream) isAnthropicError() bool {
	return string(s.name) == "error" || string(s.aType()) == `"error"` || s.aspans[akError].Found() && string(s.aType()) == ""
}

// nextAnthropic returns the serve's next event. The stream ends (io.EOF)
// after message_stop. A serve that closes after message_delta carried its
// stop_reason has finished its answer: it gets a message_stop of the
// router's, so a relayed stream always ends the way the SDKs expect.
func (s *Stream) nextAnthropic() (event, data []byte, err error) {
	if s.done {
		return nil, nil, io.EOF
	}
	if s.first {
		s.first = false // read, scanned and checked by OpenStream
	} else {
		start := time.Now()
		err := s.read()
		s.waited += time.Since(start)
		if err == io.EOF {
			if !s.Finished {
				return nil, nil, interrupted("serve ended the stream without message_stop")
			}
			s.done = true
			s.ev = append(s.ev[:0], messageStopEvent...)
			s.data = s.ev[len("event: message_stop\ndata: ") : len(s.ev)-2]
			s.name = nil
			s.scanAnthropic()
			return s.ev, s.data, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if err := s.scanAnthropic(); err != nil {
			return nil, nil, interrupted("serve sent a malformed event")
		}
		if s.isAnthropicError() {
			return nil, nil, interrupted("in-band error event mid-stream")
		}
	}
	s.noteAnthropic()
	return s.ev, s.data, nil
}

// noteAnthropic records what the current event says about the stream as a
// whole: usage (message_start's input side, message_delta's output side),
// whether the answer is finished, and its end.
func (s *Stream) noteAnthropic() {
	switch string(s.aType()) {
	case `"message_start"`:
		if m := s.aspans[akMessage]; m.Found() && s.data[m.Start] == '{' {
			msg := s.data[m.Start:m.End]
			if a, b, ok := jsonobj.Find(msg, "usage"); ok {
				s.aUsage.merge(msg[a:b])
			}
		}
	case `"message_delta"`:
		if u := s.aspans[akUsage]; u.Found() {
			s.aUsage.merge(s.data[u.Start:u.End])
		}
		if d := s.aspans[akDelta]; d.Found() && s.data[d.Start] == '{' {
			delta := s.data[d.Start:d.End]
			if a, _, ok := jsonobj.Find(delta, "stop_reason"); ok && delta[a] == '"' {
				s.Finished = true
			}
		}
	case `"message_stop"`:
		s.Finished, s.done = true, true
	}
}

// nextTranslated returns the next OpenAI chunk made of the serve's events.
// One event may make several chunks (they are handed out one per call) or
// none (ping, block stops); the translator's [DONE] is io.EOF.
func (s *Stream) nextTranslated() (event, data []byte, err error) {
	for len(s.pending) == 0 {
		if s.trEnded {
			return nil, nil, io.EOF
		}
		_, raw, err := s.nextAnthropic()
		if err == io.EOF {
			s.trEnded = true
			s.pending = s.tr.Finish()
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if s.pending, err = s.tr.Event(raw); err != nil {
			s.pending = nil
			return nil, nil, interrupted("serve event could not be translated")
		}
	}
	end := bytes.Index(s.pending, []byte("\n\n"))
	if end < 0 {
		end = len(s.pending) // a translator frame always ends in a blank line
		s.pending = append(s.pending, '\n', '\n')
	}
	frame := s.pending[:end+2]
	s.pending = s.pending[end+2:]
	data = bytes.TrimPrefix(frame[:end], []byte("data: "))
	if string(data) == "[DONE]" {
		s.pending, s.trEnded = nil, true
		return nil, nil, io.EOF
	}
	if err := jsonobj.Members(data, eventKeys[:], s.spans[:]); err != nil {
		return nil, nil, interrupted("translated event is malformed")
	}
	return frame, data, nil
}

// messageModelSpan is where message_start's message.model sits in the
// current event's payload (not found for every other event).
func (s *Stream) messageModelSpan() jsonobj.Span {
	none := jsonobj.Span{Start: -1, End: -1}
	m := s.aspans[akMessage]
	if string(s.aType()) != `"message_start"` || !m.Found() || s.data[m.Start] != '{' {
		return none
	}
	a, b, ok := jsonobj.Find(s.data[m.Start:m.End], "model")
	if !ok {
		return none
	}
	return jsonobj.Span{Start: m.Start + a, End: m.Start + b}
}

// RelayAnthropic copies an Anthropic-dialect stream to an Anthropic caller:
// every event goes out with the serve's exact bytes (pings included),
// except that message_start's message.model becomes modelJSON (the
// caller's model string; nil leaves it). Flushing and results are as for
// RelayOpenAI; a clean end has already relayed message_stop, so the
// caller writes nothing after it.
func RelayAnthropic(w io.Writer, f Flusher, s *Stream, modelJSON []byte) (RelayStats, error) {
	return relay(w, f, s, modelJSON, false)
}
