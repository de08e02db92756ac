package acp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
)

// JSON-RPC 2.0 error codes used on the wire.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeMethodNotFound = -32601
	codeInvalidParams  = -32602
	codeInternalError  = -32603
	// codeAuthRequired is ACP's "authentication required".
	codeAuthRequired = -32000
	// codeNotFound is ACP's "resource not found" (an unknown session).
	codeNotFound = -32002
)

// maxLine bounds one incoming message; a longer line is answered with a
// parse error and skipped rather than buffered without end.
const maxLine = 64 << 20

// RPCError is a JSON-RPC error object; handlers return it to choose the
// code, any other error becomes an internal error carrying its message.
type RPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *RPCError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

func rpcErr(code int, format string, args ...any) *RPCError {
	return &RPCError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// message is any JSON-RPC message; which fields are set says what it is.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *RPCError       `json:"error,omitempty"`
}

// handler answers one request (id != nil) or notification (id == nil).
type handler func(ctx context.Context, method string, params json.RawMessage) (any, error)

// conn is one newline-delimited JSON-RPC 2.0 peer over a reader and a
// writer. Requests are handled concurrently (a prompt turn runs for long
// and must not block session/cancel or the answers to the agent's own
// requests); notifications in arrival order; writes are serialised, one
// message per line.
type conn struct {
	r   io.Reader
	w   io.Writer
	log *slog.Logger

	wmu     sync.Mutex
	nextID  atomic.Int64
	pmu     sync.Mutex
	pending map[string]chan message
	done    chan struct{}
}

func newConn(r io.Reader, w io.Writer, log *slog.Logger) *conn {
	return &conn{r: r, w: w, log: log, pending: map[string]chan message{}, done: make(chan struct{})}
}

// serve reads messages until the reader ends, dispatching requests and
// notifications to h. Malformed lines are answered and skipped; they never
// end the loop.
func (c *conn) serve(ctx context.Context, h handler) error {
	// When the editor goes away, running turns are cancelled and the
	// agent's own pending requests fail before serve waits for handlers.
	ctx, cancel := context.WithCancel(ctx)
	br := bufio.NewReaderSize(c.r, 64<<10)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		close(c.done)
		wg.Wait()
	}()
	for {
		line, err := readLine(br)
		if len(bytes.TrimSpace(line)) > 0 {
			c.dispatch(ctx, line, h, &wg)
		}
		if errors.Is(err, errLineTooLong) {
			c.send(message{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: rpcErr(codeParseError, "message longer than %d bytes", maxLine)})
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine returns one line without its newline; past maxLine it discards
// the rest of the line and reports errLineTooLong.
func readLine(br *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > maxLine {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLineTooLong
		}
		buf = append(buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(buf, "\r\n"), err
	}
}

func (c *conn) dispatch(ctx context.Context, line []byte, h handler, wg *sync.WaitGroup) {
	if trimmed := bytes.TrimSpace(line); trimmed[0] == '[' && json.Valid(trimmed) {
		// ACP does not use batches.
		c.send(message{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: rpcErr(codeInvalidRequest, "batches are not supported")})
		return
	}
	var m message
	if err := json.Unmarshal(line, &m); err != nil {
		c.send(message{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: rpcErr(codeParseError, "not a JSON object: %v", err)})
		return
	}
	hasID := len(m.ID) > 0 && !bytes.Equal(m.ID, []byte("null"))
	switch {
	case m.JSONRPC != "2.0":
		c.reply(m.ID, hasID, nil, rpcErr(codeInvalidRequest, "jsonrpc must be \"2.0\""))
	case m.Method == "" && hasID && (m.Result != nil || m.Error != nil):
		c.pmu.Lock()
		ch := c.pending[string(m.ID)]
		delete(c.pending, string(m.ID))
		c.pmu.Unlock()
		if ch == nil {
			c.log.Warn("acp: answer to no request", "id", string(m.ID))
			return
		}
		ch <- m
	case m.Method == "":
		c.reply(m.ID, hasID, nil, rpcErr(codeInvalidRequest, "a request needs a method"))
	case !hasID:
		// Notifications are handled in order, on the reading goroutine:
		// their handlers are quick (session/cancel, session/update), and
		// the order of updates is what the peer shows.
		if _, err := h(ctx, m.Method, m.Params); err != nil {
			c.log.Warn("acp: notification failed", "method", m.Method, "err", err)
		}
	default:
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := h(ctx, m.Method, m.Params)
			c.reply(m.ID, true, res, err)
		}()
	}
}

// reply answers a request; notifications (no id) get nothing, except that a
// message too broken to tell gets an error with id null.
func (c *conn) reply(id json.RawMessage, hasID bool, res any, err error) {
	if !hasID {
		if err != nil && id == nil {
			var re *RPCError
			if errors.As(err, &re) && re.Code == codeInvalidRequest {
				c.send(message{JSONRPC: "2.0", ID: json.RawMessage("null"), Error: re})
			}
		}
		return
	}
	m := message{JSONRPC: "2.0", ID: id}
	if err != nil {
		var re *RPCError
		if !errors.As(err, &re) {
			re = rpcErr(codeInternalError, "%s", err.Error())
		}
		m.Error = re
	} else {
		b, merr := json.Marshal(res)
		if merr != nil {
			m.Error = rpcErr(codeInternalError, "encoding the result: %v", merr)
		} else {
			m.Result = b
		}
	}
	c.send(m)
}

func (c *conn) send(m message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err = c.w.Write(b)
	return err
}

// notify sends a notification to the peer.
func (c *conn) notify(method string, params any) error {
	b, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return c.send(message{JSONRPC: "2.0", Method: method, Params: b})
}

// call sends a request to the peer and waits for its answer, the context's
// end or the connection's end.
func (c *conn) call(ctx context.Context, method string, params, result any) error {
	b, err := json.Marshal(params)
	if err != nil {
		return err
	}
	id := json.RawMessage(strconv.FormatInt(c.nextID.Add(1), 10))
	ch := make(chan message, 1)
	c.pmu.Lock()
	c.pending[string(id)] = ch
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, string(id))
		c.pmu.Unlock()
	}()
	if err := c.send(message{JSONRPC: "2.0", ID: id, Method: method, Params: b}); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return m.Error
		}
		if result == nil || len(m.Result) == 0 || bytes.Equal(m.Result, []byte("null")) {
			return nil
		}
		return json.Unmarshal(m.Result, result)
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("the editor closed the connection")
	}
}
