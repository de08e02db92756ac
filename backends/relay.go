package backends

import (
	"bytes"
	"io"

	"github.com/anvil-serving/anvil-router/backends/jsonobj"
)

// Flusher pushes what has been written so far to the client.
type Flusher interface {
	Flush() error
}

// RelayStats describes a finished relay.
type RelayStats struct {
	Events int   // events relayed
	Bytes  int64 // bytes written to the client
}

// RelayOpenAI copies an OpenAI-dialect stream to an OpenAI-dialect caller:
// every event goes out with the serve's exact bytes, except that the
// top-level "model" of each chunk becomes the caller's alias (modelJSON,
// a JSON string; nil leaves it alone). Each event is flushed as soon as no
// further complete event is already waiting, so nothing is held back.
//
// It returns nil after the serve's clean end (the caller then writes
// "data: [DONE]"), ErrClientGone if the caller left, or an *Error of Kind
// Interrupted if the stream broke.
func RelayOpenAI(w io.Writer, f Flusher, s *Stream, modelJSON []byte) (RelayStats, error) {
	return relay(w, f, s, modelJSON, false)
}

// RelayOpenAIWithoutUsage is RelayOpenAI for a caller that did not ask
// for the usage chunk the router asked the serve for: the chunk that
// carries only usage (empty choices) is read — Usage has it — but not
// relayed, so the caller gets the stream it asked for.
func RelayOpenAIWithoutUsage(w io.Writer, f Flusher, s *Stream, modelJSON []byte) (RelayStats, error) {
	return relay(w, f, s, modelJSON, true)
}

// relay is RelayOpenAI and RelayAnthropic: the stream knows where its
// events carry the model.
func relay(w io.Writer, f Flusher, s *Stream, modelJSON []byte, dropUsage bool) (RelayStats, error) {
	var st RelayStats
	for {
		ev, data, err := s.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if dropUsage && s.usageOnly() {
			continue
		}
		n, werr := writeEvent(w, ev, data, s.modelSpan(), modelJSON, s.rawName())
		st.Events++
		st.Bytes += int64(n)
		if werr != nil {
			return st, ErrClientGone
		}
		if !s.Buffered() {
			if err := f.Flush(); err != nil {
				return st, ErrClientGone
			}
		}
	}
}

// writeEvent writes ev, splicing modelJSON over the model value of its
// data payload (at span). name is the event's "event:" name, kept if the
// event has to be re-emitted.
func writeEvent(w io.Writer, ev, data []byte, span jsonobj.Span, modelJSON, name []byte) (int, error) {
	if modelJSON == nil || !span.Found() || bytes.Equal(data[span.Start:span.End], modelJSON) {
		return w.Write(ev)
	}
	start, end := span.Start, span.End
	off := dataOffset(ev, data)
	if off < 0 {
		// Multi-line data: re-emit as one data line with the model set.
		var out []byte
		if name != nil {
			out = append(append(append(out, "event: "...), name...), '\n')
		}
		out = append(append(out, "data: "...), jsonobj.ReplaceValue(nil, data, start, end, modelJSON)...)
		return w.Write(append(out, '\n', '\n'))
	}
	var n int
	for _, part := range [3][]byte{ev[:off+start], modelJSON, ev[off+end:]} {
		m, err := w.Write(part)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// dataOffset returns where data sits inside ev when it is a contiguous
// sub-slice of it (one data line), or -1.
func dataOffset(ev, data []byte) int {
	if len(data) == 0 || len(ev) == 0 {
		return -1
	}
	i := bytes.Index(ev, data)
	if i < 0 || bytes.Count(ev, []byte("data:")) != 1 {
		return -1
	}
	return i
}

// RewriteModel returns a non-streaming JSON reply with its top-level model
// replaced by modelJSON (nil or absent model: unchanged).
func RewriteModel(body, modelJSON []byte) []byte {
	if modelJSON == nil {
		return body
	}
	start, end, ok := jsonobj.Find(body, "model")
	if !ok || bytes.Equal(body[start:end], modelJSON) {
		return body
	}
	return jsonobj.ReplaceValue(make([]byte, 0, len(body)+len(modelJSON)), body, start, end, modelJSON)
}
