package fakeserve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxBody bounds a chat request body.
const maxBody = 32 << 20

// chatRequest holds the fields of a chat completion request the fake acts on.
type chatRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Tools               []chatTool      `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
}

type chatTool struct {
	Function struct {
		Name string `json:"name"`
	} `json:"function"`
}

var reqPool = sync.Pool{New: func() any { return new(chatRequest) }}

// toolName returns the tool the answer calls, or "" for a content answer:
// the tool named by a {"type":"function","function":{"name":…}} tool_choice,
// else the first tool, unless tool_choice is "none".
func (q *chatRequest) toolName() string {
	if len(q.Tools) == 0 {
		return ""
	}
	tc := bytes.TrimSpace(q.ToolChoice)
	if bytes.Equal(tc, []byte(`"none"`)) {
		return ""
	}
	if len(tc) > 0 && tc[0] == '{' {
		var named struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(tc, &named) == nil && named.Function.Name != "" {
			return named.Function.Name
		}
	}
	return q.Tools[0].Function.Name
}

type outcome uint8

const (
	outCompleted outcome = iota
	outCancelled
	outAborted
)

func (o outcome) String() string {
	switch o {
	case outCancelled:
		return "cancelled"
	case outAborted:
		return "aborted"
	}
	return "completed"
}

// finish counts one answered request by its outcome and logs it; every
// endpoint defers it with its own kind.
func (s *Server) finish(p *plan, kind string, mode Mode, start time.Time, out outcome, status int, stream bool) {
	s.inFlight.Add(-1)
	switch out {
	case outCompleted:
		s.completed.Add(1)
	case outCancelled:
		s.noteCancelled()
	case outAborted:
		s.aborted.Add(1)
	}
	if p.opts.Logf != nil {
		p.opts.Logf("fakeserve: %s stream=%t mode=%s status=%d outcome=%s in %s",
			kind, stream, mode, status, out, time.Since(start).Round(time.Microsecond))
	}
}

// serveChat answers POST /v1/chat/completions.
func (s *Server) serveChat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	p := s.plan.Load()
	mode := s.Mode()
	s.requests.Add(1)
	s.inFlight.Add(1)

	out, status, stream := outCompleted, http.StatusOK, false
	defer func() { s.finish(p, "chat", mode, start, out, status, stream) }()
	reply := func(code int, body []byte) {
		status = code
		writeJSON(w, code, body)
	}

	body, err := readBody(r)
	if err != nil {
		if ctx.Err() != nil {
			out, status = outCancelled, 0
			panic(http.ErrAbortHandler)
		}
		reply(http.StatusBadRequest, errorBody("could not read the request body: "+err.Error(), "BadRequestError", "", http.StatusBadRequest))
		return
	}
	s.record(r, body)
	if !p.authorized(r) {
		reply(http.StatusUnauthorized, bodyUnauthorized)
		return
	}

	req := reqPool.Get().(*chatRequest)
	*req = chatRequest{}
	defer reqPool.Put(req)
	if err := json.Unmarshal(body, req); err != nil {
		reply(http.StatusBadRequest, errorBody("JSON decode error: "+err.Error(), "BadRequestError", "", http.StatusBadRequest))
		return
	}
	stream = req.Stream
	if req.Model != "" && req.Model != p.opts.Model {
		reply(http.StatusNotFound, errorBody("The model `"+req.Model+"` does not exist.", "NotFoundError", "model", http.StatusNotFound))
		return
	}
	limit := -1
	if req.MaxCompletionTokens != nil {
		limit = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	if limit != -1 && limit < 1 {
		reply(http.StatusBadRequest, errorBody(fmt.Sprintf("max_tokens must be at least 1, got %d.", limit), "BadRequestError", "max_tokens", http.StatusBadRequest))
		return
	}

	switch mode {
	case ModeStatus503:
		reply(http.StatusServiceUnavailable, body503)
		return
	case ModeStatus400:
		reply(http.StatusBadRequest, body400)
		return
	case ModeStatus500:
		reply(http.StatusInternalServerError, body500)
		return
	case ModeHang:
		<-ctx.Done()
		out, status = outCancelled, 0
		panic(http.ErrAbortHandler) // never answer, not even an empty 200
	case ModeInbandError:
		if !req.Stream {
			reply(http.StatusServiceUnavailable, bodyInband503)
			return
		}
	case ModeMidstreamError:
		if !req.Stream {
			reply(http.StatusInternalServerError, body500)
			return
		}
	}

	c := chat{
		s:      s,
		p:      p,
		w:      w,
		ctx:    ctx,
		mode:   mode,
		start:  start,
		prompt: max(1, len(body)/4),
		tool:   req.toolName(),
		usage:  req.StreamOptions.IncludeUsage,
		limit:  limit,
		bufs:   getBuffers(),
	}
	defer putBuffers(c.bufs)
	if result, ok := lastToolResult(body); ok {
		// A tool round trip's last leg: answer with text (toolresult.go).
		c.tool, c.quote = "", quoteDeltas(result)
	}
	if name, args, ok := scriptedCall(body, req); ok && c.quote == nil {
		c.tool, c.args = name, args
	}
	if c.tool != "" && p.opts.ParallelTools && c.args == "" {
		c.calls = req.toolNames()
	}
	c.bufs.id = append(c.bufs.id[:0], "chatcmpl-"...)
	c.bufs.id = appendRandomHex(c.bufs.id)
	if req.Stream {
		out = c.stream()
	} else {
		out = c.complete()
	}
	if out != outCompleted {
		// Drop the connection rather than end the response cleanly: a stream
		// cut short must not look finished. The deferred bookkeeping runs.
		panic(http.ErrAbortHandler)
	}
}

// readBody reads the whole request body in one allocation when its length is
// known.
func readBody(r *http.Request) ([]byte, error) {
	if r.ContentLength > maxBody {
		return nil, errors.New("request body too large")
	}
	if r.ContentLength >= 0 {
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err == nil && len(b) > maxBody {
		err = errors.New("request body too large")
	}
	return b, err
}

// chat is one chat request being answered (after validation).
type chat struct {
	s      *Server
	p      *plan
	w      http.ResponseWriter
	ctx    context.Context
	mode   Mode
	start  time.Time
	prompt int    // prompt tokens (one per 4 request-body bytes)
	tool   string // "" for a content answer
	usage  bool   // stream_options.include_usage
	limit  int    // max tokens, -1 for none
	bufs   *buffers
	// quote, if set, replaces the configured deltas: the answer quoting a
	// tool result (toolresult.go).
	quote []string
	// calls, with Options.ParallelTools, names every tool to call
	// (reasoning.go).
	calls []string
	// args, if set, are the arguments of the tool call instead of
	// toolArgs: a call scripted by the prompt (script.go).
	args string
}

// contentCount is the number of deltas the answer carries and its finish
// reason.
func (c *chat) contentCount() (int, []byte, string) {
	n := len(c.p.opts.Deltas)
	if c.limit >= 0 && c.limit < n {
		return c.limit, c.p.finishLength, "length"
	}
	return n, c.p.finishStop, "stop"
}

// wait sleeps for d unless the request context ends first; it reports
// whether the request is still wanted.
func (c *chat) wait(d time.Duration) bool {
	if d <= 0 {
		return c.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// send writes the pending output and flushes it to the client.
func (c *chat) send() error {
	if len(c.bufs.out) > 0 {
		_, err := c.w.Write(c.bufs.out)
		c.bufs.out = c.bufs.out[:0]
		if err != nil {
			return err
		}
	}
	return flush(c.w)
}

// frame queues one chunk frame: the request's head plus suffix.
func (c *chat) frame(suffix []byte) {
	c.bufs.out = append(c.bufs.out, c.bufs.head...)
	c.bufs.out = append(c.bufs.out, suffix...)
}

func (c *chat) raw(b []byte) { c.bufs.out = append(c.bufs.out, b...) }

// toolCallID returns a fresh vLLM-style tool call id.
func toolCallID() []byte {
	return appendRandomHex([]byte("chatcmpl-tool-"))
}

// stream answers a streaming request: role chunk, one chunk per delta (or
// tool call fragment), finish chunk, optional usage chunk, [DONE] — bent by
// the failure mode.
func (c *chat) stream() outcome {
	p, s := c.p, c.s
	c.bufs.head = p.appendChunkHead(c.bufs.head[:0], c.bufs.id, c.start.Unix())
	c.w.Header()["Content-Type"] = hdrEventStream
	c.w.WriteHeader(http.StatusOK)

	if c.mode == ModeInbandError {
		c.raw(frameInbandError)
		c.raw(frameDone)
		if c.send() != nil {
			return outCancelled
		}
		return outCompleted
	}

	var frames [][]byte
	var finish []byte
	if c.tool != "" {
		first := append([]byte(`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"`), toolCallID()...)
		first = append(first, `","type":"function","function":{"name":`...)
		first = append(first, jsonString(c.tool)...)
		first = append(first, `,"arguments":""}}]}`...)
		first = append(first, choiceEnd...)
		frames = append([][]byte{first}, toolArgFrames...)
		if c.args != "" {
			frames = append([][]byte{first}, scriptedArgFrame(c.args))
		}
		if c.calls != nil {
			frames = parallelFrames(c.calls)
		}
		finish = p.finishToolCalls
	} else if c.quote != nil {
		frames, finish = deltaFrames(c.quote), p.finishStop
	} else {
		var n int
		n, finish, _ = c.contentCount()
		frames = p.deltaSuffix[:n]
	}

	frames = c.withReasoning(frames)

	// Headers go out at once; the role chunk waits for the first token.
	if p.opts.TTFT > 0 {
		if c.send() != nil || !c.wait(p.opts.TTFT) {
			return outCancelled
		}
	}
	s.ttft.observe(time.Since(c.start))
	c.frame(p.roleSuffix)

	malformedAt, stopAt := -1, -1
	switch c.mode {
	case ModeMalformed:
		malformedAt = len(frames) / 2
	case ModeCut, ModeMidstreamError:
		stopAt = min(p.opts.CutAfter, len(frames))
	}
	for i := 0; ; i++ {
		if i == malformedAt {
			c.frame(p.malformedSuffix)
		}
		if i == stopAt {
			s.generationTokens.Add(int64(i))
			if c.mode == ModeCut {
				c.send() //nolint:errcheck // the connection is dropped next anyway
				return outAborted
			}
			c.raw(frameMidstreamError)
			c.raw(frameDone)
			if c.send() != nil {
				return outCancelled
			}
			return outCompleted
		}
		if i == len(frames) {
			break
		}
		if i > 0 && p.opts.Pace > 0 {
			if c.send() != nil || !c.wait(p.opts.Pace) {
				s.generationTokens.Add(int64(i))
				return outCancelled
			}
		}
		c.frame(frames[i])
	}
	s.promptTokens.Add(int64(c.prompt))
	s.generationTokens.Add(int64(len(frames)))

	c.frame(finish)
	if c.usage {
		c.raw(c.bufs.head)
		c.bufs.out = append(c.bufs.out, "],"...)
		c.bufs.out = appendUsage(c.bufs.out, c.prompt, len(frames))
		c.bufs.out = append(c.bufs.out, "}\n\n"...)
	}
	if c.mode != ModeNoDone {
		c.raw(frameDone)
	}
	if c.send() != nil {
		return outCancelled
	}
	return outCompleted
}

// complete answers a non-streaming request.
func (c *chat) complete() outcome {
	p, s := c.p, c.s
	n, _, reason := c.contentCount()
	if c.tool != "" {
		n, reason = len(toolArgFrames)+1, "tool_calls"
	} else if c.quote != nil {
		n, reason = len(c.quote), "stop"
	}
	if !c.wait(p.opts.TTFT) {
		return outCancelled
	}
	s.ttft.observe(time.Since(c.start))
	if n > 1 && !c.wait(time.Duration(n-1)*p.opts.Pace) {
		return outCancelled
	}
	s.promptTokens.Add(int64(c.prompt))
	s.generationTokens.Add(int64(n))

	b := append(c.bufs.out[:0], `{"id":"`...)
	b = append(b, c.bufs.id...)
	b = append(b, completionObject...)
	b = strconv.AppendInt(b, c.start.Unix(), 10)
	b = append(b, p.completionTail...)
	if c.tool != "" {
		if c.calls != nil {
			b = append(b, `null,"reasoning_content":null,"tool_calls":`...)
			b = appendParallelCalls(b, c.calls)
			b = append(b, '}')
		} else {
			b = append(b, `null,"reasoning_content":null,"tool_calls":[{"id":"`...)
			b = append(b, toolCallID()...)
			b = append(b, `","type":"function","function":{"name":`...)
			b = append(b, jsonString(c.tool)...)
			b = append(b, `,"arguments":`...)
			args := toolArgs
			if c.args != "" {
				args = c.args
			}
			b = append(b, jsonString(args)...)
			b = append(b, `}}]}`...)
		}
	} else if c.quote != nil {
		b = append(b, jsonString(strings.Join(c.quote, ""))...)
		b = append(b, `,"reasoning_content":null,"tool_calls":[]}`...)
	} else {
		if n == len(p.opts.Deltas) {
			b = append(b, p.fullContent...)
		} else {
			var content []byte
			for _, d := range p.opts.Deltas[:n] {
				content = append(content, d...)
			}
			b = append(b, jsonString(string(content))...)
		}
		b = append(b, `,"reasoning_content":null,"tool_calls":[]}`...)
	}
	b = c.reasoningMessage(b)
	b = append(b, `,"logprobs":null,"finish_reason":"`...)
	b = append(b, reason...)
	b = append(b, `","stop_reason":null}],`...)
	b = appendUsage(b, c.prompt, n)
	b = append(b, `,"prompt_logprobs":null}`...)
	c.bufs.out = b

	h := c.w.Header()
	h["Content-Type"] = hdrJSON
	switch c.mode {
	case ModeCut:
		// Promise the whole body, deliver half of it, drop the connection.
		h.Set("Content-Length", strconv.Itoa(len(b)))
		c.w.WriteHeader(http.StatusOK)
		c.bufs.out = b[:len(b)/2]
		c.send() //nolint:errcheck // the connection is dropped next anyway
		return outAborted
	case ModeMalformed:
		c.bufs.out = b[:len(b)/2]
	}
	c.w.WriteHeader(http.StatusOK)
	// No flush: a small body then goes out with a Content-Length.
	if _, err := c.w.Write(c.bufs.out); err != nil {
		return outCancelled
	}
	return outCompleted
}
