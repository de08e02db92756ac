package fakeserve

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Anthropic Messages endpoint (POST /v1/messages), for routers that
// relay to Anthropic-dialect serves. It answers with the same Options
// (model, deltas, TTFT, pace, CutAfter, API key) and failure modes as the
// chat endpoint, shaped like Anthropic's API:
//
//   - it requires an anthropic-version header and max_tokens (400
//     invalid_request_error otherwise); with Options.APIKey set it requires
//     x-api-key (401 authentication_error);
//   - "thinking":{"type":"enabled"} adds a thinking block first (two
//     thinking_delta events, then a signature_delta);
//   - with tools it calls them, no text: the tool named by a
//     {"type":"tool","name":…} tool_choice, the first tool if
//     disable_parallel_tool_use is set, otherwise every declared tool, one
//     tool_use block each with the input {"city":"Paris"} streamed as three
//     input_json_delta pieces; tool_choice "none" gets text. A request whose
//     last message carries a tool_result is answered with text quoting it
//     (ToolResultPrefix + the result), as on the chat endpoint;
//   - a stop_sequences entry found in the text ends it there (stop_reason
//     stop_sequence); max_tokens below the number of deltas cuts the text
//     (max_tokens); tools end in tool_use, anything else end_turn;
//   - usage: the prompt is one token per four body bytes, of which half
//     (rounded down) is reported as cache_read_input_tokens and the rest as
//     input_tokens; output_tokens counts every delta (thinking, text, tool
//     input pieces). message_start carries the input side, message_delta
//     the output.
//
// Failure modes: 503 → 503 overloaded_error; 400 → 400 "prompt is too
// long"; 500 → 500 api_error; inband-error → a stream whose first event is
// an overloaded_error error event (non-streaming: 529); midstream-error →
// CutAfter text deltas, then an api_error error event (non-streaming: 500);
// cut, malformed, hang and refuse as on the chat endpoint; no-done leaves
// out message_stop.

const messagesPath = "/v1/messages"

type messagesRequest struct {
	Model         string   `json:"model"`
	MaxTokens     *int     `json:"max_tokens"`
	Stream        bool     `json:"stream"`
	StopSequences []string `json:"stop_sequences"`
	Tools         []struct {
		Name string `json:"name"`
	} `json:"tools"`
	ToolChoice struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
	} `json:"tool_choice"`
	Thinking struct {
		Type string `json:"type"`
	} `json:"thinking"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// Fixed parts of the Anthropic answers.
var (
	thinkingDeltas     = []string{"Let me think", " about this."}
	thinkingSignature  = "ZmFrZS1zaWduYXR1cmU="
	anthropicToolInput = []string{`{"city":`, `"Paris"`, `}`}

	anthropicOverloaded = anthropicError("overloaded_error", "Overloaded (fake serve).")
	anthropic400        = anthropicError("invalid_request_error", "prompt is too long: 4608 tokens > "+strconv.Itoa(MaxModelLen)+" maximum (fake serve in mode 400).")
	anthropic500        = anthropicError("api_error", "Internal server error (fake serve in mode 500).")
	anthropicMidstream  = anthropicError("api_error", "Internal server error (fake serve in mode midstream-error).")
)

func anthropicError(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
	return b
}

// authorizedAnthropic reports whether r carries the API key the way
// Anthropic clients send it.
func (p *plan) authorizedAnthropic(r *http.Request) bool {
	if p.authWant == nil {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Api-Key")), []byte(p.opts.APIKey)) == 1
}

// authorizedModels admits GET /v1/models with either client's key header.
func (p *plan) authorizedModels(r *http.Request) bool {
	return p.authorized(r) || p.authorizedAnthropic(r)
}

// answer is what one Messages request is answered with, before framing.
type answer struct {
	id        string
	thinking  bool
	text      []string // text deltas (nil: no text block)
	tools     []string // names of the tools called
	stop      string
	stopSeq   string
	input     int // input_tokens (uncached part of the prompt)
	cacheRead int
	output    int
}

func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	p := s.plan.Load()
	mode := s.Mode()
	s.requests.Add(1)
	s.inFlight.Add(1)
	out, status, stream := outCompleted, http.StatusOK, false
	defer func() { s.finish(p, "messages", mode, start, out, status, stream) }()
	reply := func(code int, body []byte) {
		status = code
		writeJSON(w, code, body)
	}
	body, err := readBody(r)
	if err != nil {
		if ctx.Err() != nil {
			out = outCancelled
			panic(http.ErrAbortHandler)
		}
		reply(http.StatusBadRequest, anthropicError("invalid_request_error", "could not read the request body"))
		return
	}
	s.record(r, body)
	var req messagesRequest
	switch {
	case !p.authorizedAnthropic(r):
		reply(http.StatusUnauthorized, anthropicError("authentication_error", "invalid x-api-key"))
		return
	case r.Header.Get("Anthropic-Version") == "":
		reply(http.StatusBadRequest, anthropicError("invalid_request_error", "anthropic-version: header is required"))
		return
	case json.Unmarshal(body, &req) != nil:
		reply(http.StatusBadRequest, anthropicError("invalid_request_error", "request body is not valid JSON"))
		return
	case req.Model != p.opts.Model:
		reply(http.StatusNotFound, anthropicError("not_found_error", "model: "+req.Model))
		return
	case req.MaxTokens == nil || *req.MaxTokens < 1:
		reply(http.StatusBadRequest, anthropicError("invalid_request_error", "max_tokens: field required (a positive integer)"))
		return
	}
	stream = req.Stream
	switch mode {
	case ModeStatus503:
		reply(http.StatusServiceUnavailable, anthropicOverloaded)
		return
	case ModeStatus400:
		reply(http.StatusBadRequest, anthropic400)
		return
	case ModeStatus500:
		reply(http.StatusInternalServerError, anthropic500)
		return
	case ModeHang:
		<-ctx.Done()
		out = outCancelled
		panic(http.ErrAbortHandler)
	case ModeInbandError:
		if !req.Stream {
			reply(529, anthropicOverloaded)
			return
		}
	case ModeMidstreamError:
		if !req.Stream {
			reply(http.StatusInternalServerError, anthropic500)
			return
		}
	}
	a := planAnswer(&req, p.opts.Deltas, max(1, len(body)/4))
	m := messages{s: s, p: p, w: w, r: r, mode: mode, start: start}
	if req.Stream {
		out = m.stream(a)
	} else {
		out = m.complete(a)
	}
	if out != outCompleted {
		panic(http.ErrAbortHandler)
	}
}

// planAnswer decides the answer's content, stop reason and usage.
func planAnswer(req *messagesRequest, deltas []string, prompt int) *answer {
	a := &answer{id: "msg_" + string(appendRandomHex(nil))[:24], thinking: req.Thinking.Type == "enabled", stop: "end_turn"}
	a.cacheRead = prompt / 2
	a.input = prompt - a.cacheRead
	if result, ok := lastAnthropicToolResult(req); ok {
		a.text = quoteDeltas(result)
	} else if len(req.Tools) > 0 && req.ToolChoice.Type != "none" {
		switch {
		case req.ToolChoice.Type == "tool" && req.ToolChoice.Name != "":
			a.tools = []string{req.ToolChoice.Name}
		case req.ToolChoice.DisableParallelToolUse:
			a.tools = []string{req.Tools[0].Name}
		default:
			for _, t := range req.Tools {
				a.tools = append(a.tools, t.Name)
			}
		}
		a.stop = "tool_use"
	} else {
		a.text = deltas
		if n := *req.MaxTokens; n < len(a.text) {
			a.text, a.stop = a.text[:n], "max_tokens"
		}
		a.text, a.stopSeq = cutAtStop(a.text, req.StopSequences)
		if a.stopSeq != "" {
			a.stop = "stop_sequence"
		}
	}
	a.output = len(a.text) + len(a.tools)*len(anthropicToolInput)
	if a.thinking {
		a.output += len(thinkingDeltas)
	}
	return a
}

// cutAtStop ends the text before the first stop sequence it contains,
// returning the deltas up to there and the sequence ("" if none matched).
func cutAtStop(deltas []string, stops []string) ([]string, string) {
	var acc strings.Builder
	for i, d := range deltas {
		before := acc.Len()
		acc.WriteString(d)
		at, seq := -1, ""
		for _, st := range stops {
			if j := strings.Index(acc.String(), st); st != "" && j >= 0 && (at < 0 || j < at) {
				at, seq = j, st
			}
		}
		if at < 0 {
			continue
		}
		out := append([]string(nil), deltas[:i]...)
		if at > before {
			out = append(out, d[:at-before])
		}
		return out, seq
	}
	return deltas, ""
}

// lastAnthropicToolResult returns the text of the tool_result blocks of the
// last message, if it carries any.
func lastAnthropicToolResult(req *messagesRequest) (string, bool) {
	if len(req.Messages) == 0 {
		return "", false
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role != "user" || !bytes.Contains(last.Content, []byte(`"tool_result"`)) {
		return "", false
	}
	var blocks []struct {
		Type    string          `json:"type"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(last.Content, &blocks) != nil {
		return "", false
	}
	var b strings.Builder
	found := false
	for _, bl := range blocks {
		if bl.Type != "tool_result" {
			continue
		}
		found = true
		var s string
		if json.Unmarshal(bl.Content, &s) == nil {
			b.WriteString(s)
			continue
		}
		var parts []struct{ Type, Text string }
		json.Unmarshal(bl.Content, &parts)
		for _, p := range parts {
			if p.Type == "text" {
				b.WriteString(p.Text)
			}
		}
	}
	return b.String(), found
}

// messages is one Messages request being answered.
type messages struct {
	s     *Server
	p     *plan
	w     http.ResponseWriter
	r     *http.Request
	mode  Mode
	start time.Time
	out   []byte
}

// event appends one SSE event.
func (m *messages) event(name string, v any) {
	b, _ := json.Marshal(v)
	m.out = append(m.out, "event: "...)
	m.out = append(m.out, name...)
	m.out = append(m.out, "\ndata: "...)
	m.out = append(m.out, b...)
	m.out = append(m.out, "\n\n"...)
}

func (m *messages) send() error {
	if len(m.out) > 0 {
		_, err := m.w.Write(m.out)
		m.out = m.out[:0]
		if err != nil {
			return err
		}
	}
	return flush(m.w)
}

// wait sleeps for d unless the request ends first; it reports whether the
// request is still wanted.
func (m *messages) wait(d time.Duration) bool {
	ctx := m.r.Context()
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type obj = map[string]any

// breakStream ends a stream the way ModeCut (connection dropped) or
// ModeMidstreamError (an api_error event, then a clean end) does.
func (m *messages) breakStream() outcome {
	if m.mode == ModeCut {
		m.send() //nolint:errcheck // the connection is dropped next anyway
		return outAborted
	}
	m.out = append(m.out, "event: error\ndata: "...)
	m.out = append(append(m.out, anthropicMidstream...), "\n\n"...)
	if m.send() != nil {
		return outCancelled
	}
	return outCompleted
}

// stream answers a streaming request event by event. Pace applies between
// deltas (thinking, text and tool input alike); the failure modes bend the
// stream at delta number CutAfter, or at the end if there are fewer.
func (m *messages) stream(a *answer) outcome {
	h := m.w.Header()
	h["Content-Type"] = hdrEventStream
	m.w.WriteHeader(http.StatusOK)
	if m.mode == ModeInbandError {
		m.out = append(m.out, "event: error\ndata: "...)
		m.out = append(append(m.out, anthropicOverloaded...), "\n\n"...)
		if m.send() != nil {
			return outCancelled
		}
		return outCompleted
	}
	opts := m.p.opts
	breaks := m.mode == ModeCut || m.mode == ModeMidstreamError
	if opts.TTFT > 0 && (m.send() != nil || !m.wait(opts.TTFT)) {
		return outCancelled
	}
	m.s.ttft.observe(time.Since(m.start))
	m.event("message_start", obj{"type": "message_start", "message": obj{
		"id": a.id, "type": "message", "role": "assistant", "model": opts.Model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil,
		"usage": obj{"input_tokens": a.input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": a.cacheRead, "output_tokens": 1},
	}})
	m.event("ping", obj{"type": "ping"})

	sent, malformedAt := 0, -1
	if m.mode == ModeMalformed {
		malformedAt = a.output / 2
	}
	// delta queues one content_block_delta; ok is false when the stream
	// ends here, with result.
	delta := func(index int, d obj) (result outcome, ok bool) {
		if breaks && sent == opts.CutAfter {
			return m.breakStream(), false
		}
		if sent > 0 && opts.Pace > 0 && (m.send() != nil || !m.wait(opts.Pace)) {
			return outCancelled, false
		}
		if sent == malformedAt {
			m.out = append(m.out, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":<malformed\n\n"...)
		}
		sent++
		m.event("content_block_delta", obj{"type": "content_block_delta", "index": index, "delta": d})
		return outCompleted, true
	}
	block := func(index int, cb obj) {
		m.event("content_block_start", obj{"type": "content_block_start", "index": index, "content_block": cb})
	}
	stop := func(index int) {
		m.event("content_block_stop", obj{"type": "content_block_stop", "index": index})
	}
	index := 0
	if a.thinking {
		block(index, obj{"type": "thinking", "thinking": "", "signature": ""})
		for _, t := range thinkingDeltas {
			if r, ok := delta(index, obj{"type": "thinking_delta", "thinking": t}); !ok {
				return r
			}
		}
		m.event("content_block_delta", obj{"type": "content_block_delta", "index": index, "delta": obj{"type": "signature_delta", "signature": thinkingSignature}})
		stop(index)
		index++
	}
	if a.text != nil {
		block(index, obj{"type": "text", "text": ""})
		for _, t := range a.text {
			if r, ok := delta(index, obj{"type": "text_delta", "text": t}); !ok {
				return r
			}
		}
		stop(index)
		index++
	}
	for _, name := range a.tools {
		block(index, obj{"type": "tool_use", "id": toolUseID(), "name": name, "input": obj{}})
		for _, piece := range anthropicToolInput {
			if r, ok := delta(index, obj{"type": "input_json_delta", "partial_json": piece}); !ok {
				return r
			}
		}
		stop(index)
		index++
	}
	if breaks {
		return m.breakStream()
	}
	var stopSeq any
	if a.stopSeq != "" {
		stopSeq = a.stopSeq
	}
	m.event("message_delta", obj{"type": "message_delta", "delta": obj{"stop_reason": a.stop, "stop_sequence": stopSeq}, "usage": obj{"output_tokens": a.output}})
	if m.mode != ModeNoDone {
		m.event("message_stop", obj{"type": "message_stop"})
	}
	m.s.promptTokens.Add(int64(a.input + a.cacheRead))
	m.s.generationTokens.Add(int64(a.output))
	if m.send() != nil {
		return outCancelled
	}
	return outCompleted
}

// toolUseID returns a fresh Anthropic-style tool_use id.
func toolUseID() string { return "toolu_" + string(appendRandomHex(nil))[:24] }

// complete answers a non-streaming request.
func (m *messages) complete(a *answer) outcome {
	opts := m.p.opts
	if !m.wait(opts.TTFT) {
		return outCancelled
	}
	m.s.ttft.observe(time.Since(m.start))
	if a.output > 1 && !m.wait(time.Duration(a.output-1)*opts.Pace) {
		return outCancelled
	}
	content := []any{}
	if a.thinking {
		content = append(content, obj{"type": "thinking", "thinking": strings.Join(thinkingDeltas, ""), "signature": thinkingSignature})
	}
	if a.text != nil {
		content = append(content, obj{"type": "text", "text": strings.Join(a.text, "")})
	}
	for _, name := range a.tools {
		content = append(content, obj{"type": "tool_use", "id": toolUseID(), "name": name, "input": json.RawMessage(strings.Join(anthropicToolInput, ""))})
	}
	var stopSeq any
	if a.stopSeq != "" {
		stopSeq = a.stopSeq
	}
	b, _ := json.Marshal(obj{
		"id": a.id, "type": "message", "role": "assistant", "model": opts.Model, "content": content,
		"stop_reason": a.stop, "stop_sequence": stopSeq,
		"usage": obj{"input_tokens": a.input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": a.cacheRead, "output_tokens": a.output},
	})
	m.s.promptTokens.Add(int64(a.input + a.cacheRead))
	m.s.generationTokens.Add(int64(a.output))
	h := m.w.Header()
	h["Content-Type"] = hdrJSON
	switch m.mode {
	case ModeCut:
		h.Set("Content-Length", strconv.Itoa(len(b)))
		m.w.WriteHeader(http.StatusOK)
		m.w.Write(b[:len(b)/2]) //nolint:errcheck // the connection is dropped next anyway
		flush(m.w)              //nolint:errcheck // likewise
		return outAborted
	case ModeMalformed:
		b = b[:len(b)/2]
	}
	m.w.WriteHeader(http.StatusOK)
	if _, err := m.w.Write(b); err != nil {
		return outCancelled
	}
	return outCompleted
}
