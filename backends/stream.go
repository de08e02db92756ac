package backends

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"mime"
	"sync"
	"time"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// maxEventBytes bounds one SSE event from a serve; a larger one is treated
// as a broken stream rather than buffered without limit.
const maxEventBytes = 8 << 20

// Stream is an upstream SSE response whose status and first event have
// been checked: by the time the caller holds a Stream, the serve has
// accepted the request and started producing, so the caller may commit 200.
type Stream struct {
	x     *exchange
	rd    *bufio.Reader
	ev    []byte // current raw event, including its blank-line terminator
	data  []byte // payload of the current event's data lines
	first bool   // ev holds the first event, not yet consumed
	done  bool
	// spans of the current event's top-level model, error, object and
	// choices (see eventKeys), from one scan.
	spans [len(eventKeys)]jsonobj.Span
	// Finished is set once a chunk carried a finish_reason: the answer is
	// complete even if the serve then fails to send [DONE].
	Finished bool
	// usage is the last usage object the serve reported.
	usage []byte
	// waited is the time spent blocked on the serve after the first event.
	waited time.Duration

	// anthropic: the serve speaks Anthropic Messages events (see
	// anthropic_stream.go for this state).
	anthropic bool
	name      []byte // the current event's "event:" name
	aspans    [len(anthropicKeys)]jsonobj.Span
	aUsage    anthropicCounts
	// tr, when set, turns the Anthropic events into OpenAI chunks; pending
	// holds translated frames not yet returned.
	tr      ChunkTranslator
	pending []byte
	trEnded bool
}

// Usage returns the token counts of the serve's last usage report (zeros
// when it sent none).
func (s *Stream) Usage() (prompt, completion int) {
	if s.anthropic {
		u := s.aUsage
		return u.input + u.cacheRead + u.cacheCreate, u.output
	}
	return ParseUsage(s.usage)
}

// UsageDetails returns the cached prompt tokens and reasoning tokens of
// the serve's last usage report (zeros when it sent none).
func (s *Stream) UsageDetails() (cached, reasoning int) {
	if s.anthropic {
		return s.aUsage.cacheRead, 0
	}
	return ParseUsageDetails(s.usage)
}

// Waited is how long the relay waited on the serve after the first event:
// with the time to that event, the serve's share of a stream.
func (s *Stream) Waited() time.Duration { return s.waited }

// OpenStream sends a streaming request and reads up to the first data
// event. A serve that fails before that — refused, silent, non-2xx, or an
// in-band error as its first event (SGLang's queue-full) — yields a
// classified *Error and nothing has been sent to the caller.
func (t *Tier) OpenStream(ctx context.Context, body []byte) (*Stream, error) {
	return t.openStream(ctx, t.endpoint(), body)
}

// openStream is OpenStream at endpoint e of the tier.
func (t *Tier) openStream(ctx context.Context, e endpoint, body []byte) (*Stream, error) {
	x, err := e.open(ctx, body, true)
	if err != nil {
		return nil, err
	}
	if mt, _, _ := mime.ParseMediaType(x.resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		x.Close()
		return nil, failed("serve answered a streaming request with " + mt)
	}
	rd := readerPool.Get().(*bufio.Reader)
	rd.Reset(x.body)
	s := &Stream{x: x, rd: rd, anthropic: t.Dialect == "anthropic"}
	if err := s.read(); err != nil {
		s.Close()
		if err == io.EOF {
			return nil, failed("serve closed the stream before the first event")
		}
		if e, ok := err.(*Error); ok && e.Kind == Interrupted {
			// Nothing committed yet: still a clean, retryable refusal.
			return nil, unavailable(e.Detail)
		}
		return nil, err
	}
	if s.anthropic {
		return s.firstAnthropic()
	}
	if err := s.scan(); err != nil {
		s.Close()
		return nil, failed("serve's first event is malformed")
	}
	if s.isError() {
		s.Close()
		return nil, classifyInband(s.data)
	}
	s.first = true
	return s, nil
}

// read loads the next event that carries data (comments and empty events
// are skipped) into s.ev and s.data.
func (s *Stream) read() error {
	for {
		s.ev = s.ev[:0]
		s.data = s.data[:0]
		s.name = nil
		dataLines := 0
		for {
			line, err := s.rd.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A very long line: keep collecting it.
				s.ev = append(s.ev, line...)
				if len(s.ev) > maxEventBytes {
					return interrupted("serve event exceeds 8 MiB")
				}
				continue
			}
			if err != nil {
				if len(s.ev)+len(line) == 0 && err == io.EOF {
					return io.EOF
				}
				return s.x.readErr(err)
			}
			start := len(s.ev)
			s.ev = append(s.ev, line...)
			if len(s.ev) > maxEventBytes {
				return interrupted("serve event exceeds 8 MiB")
			}
			full := s.ev[lineStart(s.ev, start):]
			text := bytes.TrimRight(full, "\r\n")
			if len(text) == 0 {
				break // blank line: end of event
			}
			if v, ok := bytes.CutPrefix(text, []byte("data:")); ok {
				v, _ = bytes.CutPrefix(v, []byte(" "))
				if dataLines > 0 {
					s.data = append(s.data, '\n')
				}
				s.data = append(s.data, v...)
				dataLines++
			} else if s.anthropic {
				if v, ok := bytes.CutPrefix(text, []byte("event:")); ok {
					s.name = bytes.TrimSpace(v)
				}
			}
		}
		if dataLines > 0 {
			return nil
		}
		// A comment/keep-alive or an event without data: nothing to relay.
	}
}

// lineStart finds the start of the line that was appended at offset start,
// which may be earlier if the line arrived in several ReadSlice pieces.
func lineStart(ev []byte, start int) int {
	i := bytes.LastIndexByte(ev[:start], '\n')
	return i + 1
}

// Next returns the next raw event (its bytes exactly as the serve sent
// them) and its data payload. Both are valid until the following call.
// At the serve's [DONE] (an Anthropic serve's message_stop, relayed first)
// it returns io.EOF. A stream that breaks — cut, silent past the timeout,
// malformed, or an in-band error — returns an *Error of Kind Interrupted
// (or ErrClientGone).
func (s *Stream) Next() (event, data []byte, err error) {
	if s.anthropic {
		if s.tr != nil {
			return s.nextTranslated()
		}
		return s.nextAnthropic()
	}
	if s.done {
		return nil, nil, io.EOF
	}
	if s.first {
		// Read, scanned and checked by OpenStream.
		s.first = false
	} else {
		start := time.Now()
		err := s.read()
		s.waited += time.Since(start)
		if err != nil {
			if err != io.EOF {
				return nil, nil, err
			}
			if s.Finished {
				// The answer is complete; only the terminator is missing.
				s.done = true
				return nil, nil, io.EOF
			}
			return nil, nil, interrupted("serve ended the stream without [DONE]")
		}
		if bytes.Equal(bytes.TrimSpace(s.data), []byte("[DONE]")) {
			s.done = true
			return nil, nil, io.EOF
		}
		if err := s.scan(); err != nil {
			return nil, nil, interrupted("serve sent a malformed event")
		}
		if s.isError() {
			return nil, nil, interrupted("in-band error event mid-stream")
		}
	}
	if !s.Finished {
		if c := s.spans[keyChoices]; c.Found() {
			s.Finished = hasFinishReason(s.data[c.Start:c.End])
		}
	}
	if u := s.spans[keyUsage]; u.Found() && s.data[u.Start] == '{' {
		s.usage = append(s.usage[:0], s.data[u.Start:u.End]...)
	}
	return s.ev, s.data, nil
}

// UsageOnly is usageOnly for relays outside this package (the guardrails'
// gated relay drops the usage chunk the router asked for, too).
func (s *Stream) UsageOnly() bool { return s.usageOnly() }

// usageOnly reports whether the current OpenAI chunk carries usage and
// no choices (the include_usage chunk).
func (s *Stream) usageOnly() bool {
	u, c := s.spans[keyUsage], s.spans[keyChoices]
	return !s.anthropic && u.Found() && s.data[u.Start] == '{' &&
		(!c.Found() || len(bytes.TrimSpace(bytes.Trim(bytes.TrimSpace(s.data[c.Start:c.End]), "[]"))) == 0)
}

// The top-level members the relay looks at in every event.
var eventKeys = [...]string{"model", "error", "object", "choices", "usage"}

const (
	keyModel = iota
	keyError
	keyObject
	keyChoices
	keyUsage
)

// scan checks the current event's payload and indexes its members.
func (s *Stream) scan() error {
	return jsonobj.Members(s.data, eventKeys[:], s.spans[:])
}

// isError reports whether the current event is an error object rather than
// a chunk: vLLM's {"error":{...}} or SGLang's {"object":"error",...}.
func (s *Stream) isError() bool {
	if s.spans[keyError].Found() {
		return true
	}
	o := s.spans[keyObject]
	return o.Found() && string(s.data[o.Start:o.End]) == `"error"`
}

// modelSpan is where the current event's model value sits in its data
// payload: top-level in an OpenAI chunk (translated ones included),
// message.model in an Anthropic message_start.
func (s *Stream) modelSpan() jsonobj.Span {
	if s.anthropic && s.tr == nil {
		return s.messageModelSpan()
	}
	return s.spans[keyModel]
}

// rawName is the current event's "event:" name when Next returns the
// serve's own Anthropic events, else nil.
func (s *Stream) rawName() []byte {
	if s.tr != nil {
		return nil
	}
	return s.name
}

// Buffered reports whether a whole further event is already buffered, so the
// relay can write it before flushing (fewer syscalls, no added delay).
func (s *Stream) Buffered() bool {
	if s.tr != nil {
		// A buffered Anthropic event may translate to nothing (a ping, a
		// block stop): only frames already translated count.
		return len(s.pending) > 0
	}
	n := s.rd.Buffered()
	if n == 0 {
		return false
	}
	b, _ := s.rd.Peek(n)
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n"))
}

// drainGrace bounds how long Close waits for the end of a finished
// stream's body (normally already buffered) to keep the connection pooled.
const drainGrace = 50 * time.Millisecond

// Close releases the upstream request; if the stream was not read to its
// end, the serve sees the connection close and stops generating. After a
// clean end the rest of the body (the chunked terminator) is read so the
// connection returns to the pool: deliberately here, after the caller has
// already been sent [DONE], not before.
func (s *Stream) Close() {
	if s.done && s.rd != nil {
		s.x.timeout = drainGrace
		io.Copy(io.Discard, io.LimitReader(s.rd, 64<<10))
	}
	s.x.Close()
	if s.rd != nil {
		s.rd.Reset(nil)
		readerPool.Put(s.rd)
		s.rd = nil
	}
}

// readerPool recycles the per-stream read buffers: with a thousand streams
// open, allocating 32 KiB each per request would dominate the garbage.
var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// hasFinishReason reports whether an OpenAI chunk's choices carry a
// non-null finish_reason. Inside JSON strings quotes are escaped, so the
// quoted key can only match a key.
func hasFinishReason(choices []byte) bool {
	i := bytes.Index(choices, []byte(`"finish_reason"`))
	if i < 0 {
		return false
	}
	rest := bytes.TrimLeft(choices[i+len(`"finish_reason"`):], " \t\r\n:")
	return len(rest) > 0 && rest[0] == '"'
}
