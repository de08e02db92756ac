package backends

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// h1Transport is the HTTP/1.1 client used for plain-http serves, which the
// router normally reaches over loopback. It exists for speed: net/http's
// Transport runs a read goroutine and a write goroutine per connection and
// hands every request and response between them over channels, which the
// profile of a busy router showed as about a quarter of its CPU. Here the
// caller's goroutine writes the request and reads the response on a pooled
// connection itself; nothing runs in the background, and an idle connection
// costs two small buffers.
//
// Request and response framing are the standard library's (Request.Write
// and http.ReadResponse), so only connection management lives here:
// pooling, staleness checks, cancellation, and one retry when a request
// could not even be written to a pooled connection the serve had closed.
// Anything that is not plain http (https serves) goes to fallback.
type h1Transport struct {
	dialer      net.Dialer
	fallback    http.RoundTripper
	maxIdle     int           // pooled connections per serve address
	idleTimeout time.Duration // a connection idle longer is closed, not reused

	mu   sync.Mutex
	idle map[string][]*h1Conn // by host:port, most recently used last
	// sweep closes connections idle past idleTimeout or closed by the
	// serve; it runs only while the pool holds any (see closeStale).
	sweep *time.Timer
}

// h1Conn is one keep-alive connection to a serve.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	addr      string
	idleSince time.Time
}

// Buffer sizes per connection: a streamed event or a request's headers fit
// easily; larger bodies pass through the buffers in pieces.
const (
	h1ReadBuffer  = 8 << 10
	h1WriteBuffer = 4 << 10
)

// h1PeerCheckInterval is how often pooled connections are checked for a
// serve that closed them (one non-blocking recv each).
const h1PeerCheckInterval = time.Second

func newH1Transport(maxIdlePerHost int, fallback http.RoundTripper) *h1Transport {
	return &h1Transport{
		dialer:      net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		fallback:    fallback,
		maxIdle:     maxIdlePerHost,
		idleTimeout: 90 * time.Second,
		idle:        make(map[string][]*h1Conn),
	}
}

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.URL.User != nil {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(ctx, addr)
		if err != nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		resp, err := t.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		c.nc.Close()
		// A pooled connection the serve had reset can still pass the idle
		// check (the reset arrives in between) and then fail the write.
		// A request that could not be written was not received, so it is
		// sent once more on a fresh connection, if its body can be
		// replayed. Once written it is never resent, whatever happens
		// next: the serve may already be generating for it (net/http does
		// the same for POST).
		var we writeError
		if reused && attempt == 0 && ctx.Err() == nil && errors.As(err, &we) && isStaleConnErr(we.err) && (req.Body == nil || req.GetBody != nil) {
			if req.GetBody != nil {
				body, gerr := req.GetBody()
				if gerr != nil {
					return nil, err
				}
				r2 := *req
				r2.Body = body
				req = &r2
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
}

// exchange writes req on c and reads the response headers. The caller's
// context is enforced by expiring the connection's deadline, which unblocks
// any read or write in progress without a watcher goroutine.
func (t *h1Transport) exchange(ctx context.Context, c *h1Conn, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		stop()
		return nil, writeError{err}
	}
	resp, err := http.ReadResponse(c.br, req)
	if err != nil {
		stop()
		return nil, err
	}
	resp.Body = &h1Body{
		rc:   resp.Body,
		c:    c,
		t:    t,
		stop: stop,
		keep: !resp.Close && !req.Close,
	}
	return resp, nil
}

// conn returns a pooled connection to addr that still looks healthy, or a
// new one.
func (t *h1Transport) conn(ctx context.Context, addr string) (c *h1Conn, reused bool, err error) {
	now := time.Now()
	for {
		t.mu.Lock()
		list := t.idle[addr]
		if len(list) == 0 {
			t.mu.Unlock()
			break
		}
		c = list[len(list)-1]
		list[len(list)-1] = nil
		t.idle[addr] = list[:len(list)-1]
		t.mu.Unlock()
		if now.Sub(c.idleSince) < t.idleTimeout && peerStillOpen(c.nc) {
			return c, true, nil
		}
		c.nc.Close()
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return &h1Conn{
		nc:   nc,
		br:   bufio.NewReaderSize(nc, h1ReadBuffer),
		bw:   bufio.NewWriterSize(nc, h1WriteBuffer),
		addr: addr,
	}, false, nil
}

// put returns a connection whose response was read to the end. Bytes
// already buffered past that end belong to no request: such a connection
// is out of step and is closed instead.
func (t *h1Transport) put(c *h1Conn) {
	if c.br.Buffered() > 0 {
		c.nc.Close()
		return
	}
	c.idleSince = time.Now()
	t.mu.Lock()
	if list := t.idle[c.addr]; len(list) < t.maxIdle {
		t.idle[c.addr] = append(list, c)
		if t.sweep == nil {
			t.sweep = time.AfterFunc(min(t.idleTimeout, h1PeerCheckInterval), t.closeStale)
		}
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	c.nc.Close()
}

// closeStale closes the pooled connections idle for idleTimeout or more,
// and those whose serve has closed its end: a serve that drops idle
// keep-alive connections (uvicorn does after 5 s) would otherwise leave
// ours in CLOSE_WAIT, holding a descriptor until the next burst reached
// them. It runs again while any connection remains, at most
// h1PeerCheckInterval later.
func (t *h1Transport) closeStale() {
	now := time.Now()
	var stale []*h1Conn
	next := time.Duration(-1)
	t.mu.Lock()
	for addr, list := range t.idle {
		kept := list[:0]
		for _, c := range list {
			if now.Sub(c.idleSince) >= t.idleTimeout || !peerStillOpen(c.nc) {
				stale = append(stale, c)
				continue
			}
			kept = append(kept, c)
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(t.idle, addr)
			continue
		}
		t.idle[addr] = kept
		// kept is oldest first: the order connections came back.
		if wait := t.idleTimeout - now.Sub(kept[0].idleSince); next < 0 || wait < next {
			next = wait
		}
	}
	if next >= 0 {
		t.sweep.Reset(min(next, h1PeerCheckInterval))
	} else {
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.nc.Close()
	}
}

// CloseIdleConnections closes every pooled connection (http.Client calls
// it; the router does on shutdown).
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*h1Conn)
	if t.sweep != nil {
		t.sweep.Stop()
		t.sweep = nil
	}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
	if ci, ok := t.fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// h1Body is a response body that gives its connection back to the pool
// when read to the end, and closes it when abandoned early: closing is what
// tells a serve to stop generating for a caller that went away.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	t    *h1Transport
	stop func() bool // detaches the context's deadline trigger
	keep bool        // the connection may be reused after this response
	once sync.Once
}

func (b *h1Body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

// Close abandons the rest of the body. The inner body's own Close would
// drain a stream to its end, so it is not called; the connection is closed
// instead, unless the body was already read through.
func (b *h1Body) Close() error {
	b.finish(false)
	return nil
}

func (b *h1Body) finish(eof bool) {
	b.once.Do(func() {
		// stop reports false if the context already fired, in which case
		// the connection's deadline is poisoned and it cannot be reused.
		if b.stop() && eof && b.keep {
			b.t.put(b.c)
			return
		}
		b.c.nc.Close()
	})
}

// writeError marks a failure to send the request, as opposed to one while
// waiting for or reading the response.
type writeError struct{ err error }

func (e writeError) Error() string { return e.err.Error() }
func (e writeError) Unwrap() error { return e.err }

// isStaleConnErr reports whether err is how writing to a connection the
// peer has already closed or reset fails.
func isStaleConnErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isConnReset(err)
}
