package tsrouter

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"
)

// Request bodies are read by dispatch, before the route takes a slot: a
// caller that trickles its body holds no slot while it does, and its
// buffer grows with the bytes that arrive, not with the Content-Length it
// declared. It must keep a minimum average rate after a short grace, or
// it gets 408 and the connection is closed.
const (
	// DefaultBodyGrace is how long any body may take before the rate
	// counts.
	DefaultBodyGrace = 10 * time.Second
	// DefaultMinBodyRate is the minimum average rate, in bytes a second,
	// after the grace (a 32 MiB body may take 10 s + 8.5 min).
	DefaultMinBodyRate = 64 << 10
	// DefaultWriteStall is how long a write to a caller that stopped
	// reading may block.
	DefaultWriteStall = 30 * time.Second
	// bodyFirstBuffer is the first buffer of a body of unknown or large
	// declared size; it doubles as data arrives.
	bodyFirstBuffer = 64 << 10
	// lingerBytes and lingerTime bound how much of a refused body is read
	// and thrown away after the 413 is sent, so a client that writes the
	// whole body before reading its answer reads the 413 instead of a
	// reset connection.
	lingerBytes = 64 << 20
	lingerTime  = 10 * time.Second
)

// readBody reads a request body of at most limit bytes: the one reader of
// request bodies. A declared length over the limit is refused before
// reading.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	if r.Body == nil || r.ContentLength == 0 {
		return nil, nil
	}
	rc := http.NewResponseController(w)
	size := int64(bodyFirstBuffer)
	if r.ContentLength > 0 && r.ContentLength < size {
		size = r.ContentLength
	}
	buf := make([]byte, 0, size)
	start := time.Now()
	for {
		if len(buf) == cap(buf) {
			next := min(2*int64(cap(buf)), limit+1)
			if r.ContentLength > 0 {
				next = min(next, r.ContentLength)
			}
			if next <= int64(cap(buf)) {
				next = int64(cap(buf)) + 1 // one more byte tells "over the limit" from EOF
			}
			buf = append(buf, make([]byte, next-int64(len(buf)))...)[:len(buf)]
		}
		room := cap(buf) - len(buf)
		// Time for what has arrived plus this read's room, at the
		// minimum rate, after the grace.
		rc.SetReadDeadline(start.Add(h.bodyGrace + time.Duration(int64(len(buf)+room)*int64(time.Second)/h.minBodyRate)))
		n, err := r.Body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, errTooLarge
		}
		switch {
		case err == io.EOF:
			// Lift the deadline: the connection serves on.
			rc.SetReadDeadline(time.Time{})
			return buf, nil
		case err != nil:
			// Leave the connection's reads failing: net/http would
			// otherwise wait for the rest of the body to discard it.
			rc.SetReadDeadline(time.Now())
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, errSlowBody
			}
			return nil, errUnreadableBody
		}
	}
}

// linger reads and discards what remains of a refused body, within
// bounds, after the refusal was sent.
func linger(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	rc.Flush()
	rc.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(r.Body, lingerBytes))
	rc.SetReadDeadline(time.Time{})
}

// stallWriter is the response writer of a stream: every write may block
// at most stall (the caller stopped reading), then fails; the relay then
// ends the stream as the caller's fault and cancels the serve's request.
type stallWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	// stalled is set when a write failed past its deadline.
	stalled bool
}

func newStallWriter(w http.ResponseWriter, stall time.Duration) *stallWriter {
	return &stallWriter{w: w, rc: http.NewResponseController(w), stall: stall}
}

func (s *stallWriter) Write(p []byte) (int, error) {
	s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	n, err := s.w.Write(p)
	s.note(err)
	return n, err
}

func (s *stallWriter) Flush() error {
	s.rc.SetWriteDeadline(time.Now().Add(s.stall))
	err := s.rc.Flush()
	s.note(err)
	return err
}

func (s *stallWriter) note(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.stalled = true
	}
}

// done lifts the deadline: the connection may serve other requests.
func (s *stallWriter) done() { s.rc.SetWriteDeadline(time.Time{}) }

// writeReply writes a whole JSON reply under the write-stall deadline: a
// caller that does not read a large reply (an embeddings batch) loses it
// after the stall rather than holding its slot and lease.
func (h *Handler) writeReply(w http.ResponseWriter, body []byte) {
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(h.writeStall))
	writeJSON(w, http.StatusOK, body)
	rc.Flush()
	rc.SetWriteDeadline(time.Time{})
}
