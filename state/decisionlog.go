package state

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
)

// DefaultDecisionLogMaxBytes is the size at which the decision JSONL file is
// rotated: big enough for days of records, small enough that
// the file plus its one old generation never fill a small state volume.
const DefaultDecisionLogMaxBytes = 64 << 20

// DecisionLog is the decision_log_path sink: an append-only JSON Lines file,
// one record per line, rotated to path+".1" (one generation) when it reaches
// MaxBytes. Unlike the other files of this package it is not replaced
// atomically: each record is a single write(2) of a whole line on an
// O_APPEND file, so a crash loses at most the line being written and readers
// (tail -f, jq) never see two records interleaved.
type DecisionLog struct {
	// MaxBytes is the rotation threshold; DefaultDecisionLogMaxBytes unless
	// changed. Set it before the first Append (tests use a small one).
	MaxBytes int64

	path string

	mu     sync.Mutex
	f      *os.File
	size   int64
	buf    []byte // reused line buffer
	closed bool
}

// OpenDecisionLog opens (or creates, mode 0600) the decision log at path for
// appending. The parent directory must already exist: creating directories
// here would hide a mistyped decision_log_path until someone looks for the
// file.
func OpenDecisionLog(path string) (*DecisionLog, error) {
	d := &DecisionLog{MaxBytes: DefaultDecisionLogMaxBytes, path: path}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
}

// Path is the file the log appends to.
func (d *DecisionLog) Path() string { return d.path }

func (d *DecisionLog) open() error {
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("decision log: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("decision log: %s is not a regular file", d.path)
	}
	d.f, d.size = f, st.Size()
	return nil
}

// ErrDecisionLogClosed is returned by Append after Close.
var ErrDecisionLogClosed = errors.New("decision log: closed")

// Append writes line as one record, adding the terminating newline if it is
// missing. A line with an embedded newline is refused: it would read back
// as two records. Safe for concurrent use.
func (d *DecisionLog) Append(line []byte) error {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	if bytes.IndexByte(line, '\n') >= 0 {
		return errors.New("decision log: record contains a newline")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrDecisionLogClosed
	}
	if d.f == nil {
		// A failed reopen after rotation left no file; try again so
		// one transient error does not silence the log for good.
		if err := d.open(); err != nil {
			return err
		}
	}
	// One write per record (see the type comment), so the newline is
	// copied into a reused buffer rather than written separately.
	d.buf = append(append(d.buf[:0], line...), '\n')
	n, err := d.f.Write(d.buf)
	d.size += int64(n)
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	if d.MaxBytes > 0 && d.size >= d.MaxBytes {
		return d.rotate()
	}
	return nil
}

// rotate renames the full file to path.1, replacing the previous
// generation, and starts a new file. Called with mu held.
func (d *DecisionLog) rotate() error {
	if err := os.Rename(d.path, d.path+".1"); err != nil {
		// Keep appending to the oversized file: losing records would
		// be worse than a file over the threshold.
		return fmt.Errorf("decision log: rotate: %w", err)
	}
	err := d.f.Close()
	d.f = nil
	if oerr := d.open(); oerr != nil {
		return oerr
	}
	if err != nil {
		return fmt.Errorf("decision log: close rotated file: %w", err)
	}
	return nil
}

// Close flushes the file to disk and closes it; later Appends fail.
func (d *DecisionLog) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.f == nil {
		return nil
	}
	f := d.f
	d.f = nil
	serr := f.Sync()
	if err := f.Close(); err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("decision log: %w", serr)
	}
	return nil
}
