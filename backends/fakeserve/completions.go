package fakeserve

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// POST /v1/completions, the legacy text completions API, in vLLM's shape:
// a "text_completion" object with one choice per prompt (a list prompt is
// a batch), each carrying text, logprobs, finish_reason and stop_reason;
// streamed as chunks of the same object, then [DONE].
//
// The answer to each prompt is the configured deltas, or, when the request
// has a suffix (fill in the middle), [FIMDeltas] of that prompt and suffix,
// so a test sees both arrived. echo prepends the prompt (token-id prompts
// echo as ""); max_tokens cuts the deltas (finish_reason "length"); the
// first stop string found in the answer cuts it there (finish_reason
// "stop", stop_reason the string); logprobs (an integer) adds a fixed
// logprob of -0.25 per delta. The failure modes act as on chat, and the
// request counts in [Stats] like a chat request.

const completionsPath = "/v1/completions"

// fimQuote bounds how much of the prompt's end and the suffix's start a
// FIM answer quotes.
const fimQuote = 32

// FIMDeltas are the deltas answering a completion request with a suffix:
// "<fill after=" the quoted last 32 bytes of the prompt, " before=" the
// quoted first 32 bytes of the suffix, ">".
func FIMDeltas(prompt, suffix string) []string {
	tail := prompt
	if len(tail) > fimQuote {
		i := len(tail) - fimQuote
		for i < len(tail) && !utf8.RuneStart(tail[i]) {
			i++
		}
		tail = tail[i:]
	}
	head := suffix
	if len(head) > fimQuote {
		i := fimQuote
		for i > 0 && !utf8.RuneStart(head[i]) {
			i--
		}
		head = head[:i]
	}
	return []string{"<fill", " after=", strconv.Quote(tail), " before=", strconv.Quote(head), ">"}
}

// completionRequest holds the fields of a text completion request the fake
// acts on.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Suffix        *string         `json:"suffix"`
	Echo          bool            `json:"echo"`
	Logprobs      *int            `json:"logprobs"`
	Stop          json.RawMessage `json:"stop"`
	MaxTokens     *int            `json:"max_tokens"`
	Stream        bool            `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// textPrompt is one prompt of a request: its text, and its size in tokens
// (token ids as sent, else one per four bytes, at least one).
type textPrompt struct {
	text   string
	tokens int
}

// prompts reads the prompt: a string, strings, token ids or token id lists.
func (q *completionRequest) prompts() ([]textPrompt, bool) {
	raw := bytes.TrimSpace(q.Prompt)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []textPrompt{{one, max(1, len(one)/4)}}, true
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) > 0 {
		out := make([]textPrompt, len(texts))
		for i, s := range texts {
			out[i] = textPrompt{s, max(1, len(s)/4)}
		}
		return out, true
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return []textPrompt{{"", len(ids)}}, true
	}
	var lists [][]int
	if json.Unmarshal(raw, &lists) == nil && len(lists) > 0 {
		out := make([]textPrompt, len(lists))
		for i, l := range lists {
			if len(l) == 0 {
				return nil, false
			}
			out[i] = textPrompt{"", len(l)}
		}
		return out, true
	}
	return nil, false
}

// stops reads stop: a string or a list of strings.
func (q *completionRequest) stops() ([]string, bool) {
	raw := bytes.TrimSpace(q.Stop)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var list []string
	return list, json.Unmarshal(raw, &list) == nil
}

// textChoice is the answer to one prompt.
type textChoice struct {
	echo       string
	deltas     []string
	finish     string
	stopReason string // the matched stop string, or ""
}

// answer computes the answer to one prompt.
func (q *completionRequest) answer(deltas []string, p textPrompt, stops []string) textChoice {
	c := textChoice{deltas: deltas, finish: "stop"}
	if q.Suffix != nil {
		c.deltas = FIMDeltas(p.text, *q.Suffix)
	}
	if q.Echo {
		c.echo = p.text
	}
	if q.MaxTokens != nil && *q.MaxTokens < len(c.deltas) {
		c.deltas, c.finish = c.deltas[:*q.MaxTokens], "length"
	}
	// The earliest stop string ends the answer before it.
	full := strings.Join(c.deltas, "")
	cut, hit := len(full), ""
	for _, s := range stops {
		if i := strings.Index(full, s); s != "" && i >= 0 && i < cut {
			cut, hit = i, s
		}
	}
	if hit == "" {
		return c
	}
	var kept []string
	for n := 0; n < cut; {
		d := c.deltas[len(kept)]
		if n+len(d) > cut {
			d = d[:cut-n]
		}
		kept = append(kept, d)
		n += len(d)
	}
	c.deltas, c.finish, c.stopReason = kept, "stop", hit
	return c
}

// serveCompletions answers POST /v1/completions.
func (s *Server) serveCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ctx := r.Context()
	p := s.plan.Load()
	mode := s.Mode()
	s.requests.Add(1)
	s.inFlight.Add(1)
	out, status, stream := outCompleted, http.StatusOK, false
	defer func() { s.finish(p, "completions", mode, start, out, status, stream) }()
	reply := func(code int, body []byte) {
		status = code
		writeJSON(w, code, body)
	}
	badRequest := func(msg, param string) {
		reply(http.StatusBadRequest, errorBody(msg, "BadRequestError", param, http.StatusBadRequest))
	}

	body, err := readBody(r)
	if err != nil {
		if ctx.Err() != nil {
			out, status = outCancelled, 0
			panic(http.ErrAbortHandler)
		}
		badRequest("could not read the request body: "+err.Error(), "")
		return
	}
	s.record(r, body)
	if !p.authorized(r) {
		reply(http.StatusUnauthorized, bodyUnauthorized)
		return
	}
	var req completionRequest
	if err := json.Unmarshal(body, &req); err != nil {
		badRequest("JSON decode error: "+err.Error(), "")
		return
	}
	stream = req.Stream
	if req.Model != "" && req.Model != p.opts.Model {
		reply(http.StatusNotFound, errorBody("The model `"+req.Model+"` does not exist.", "NotFoundError", "model", http.StatusNotFound))
		return
	}
	prompts, ok := req.prompts()
	if !ok {
		badRequest("prompt must be a string, a list of strings, token ids or lists of token ids", "prompt")
		return
	}
	stops, ok := req.stops()
	if !ok {
		badRequest("stop must be a string or a list of strings", "stop")
		return
	}
	if req.MaxTokens != nil && *req.MaxTokens < 1 {
		badRequest("max_tokens must be at least 1, got "+strconv.Itoa(*req.MaxTokens)+".", "max_tokens")
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
		panic(http.ErrAbortHandler)
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

	t := &textCompletion{c: chat{s: s, p: p, w: w, ctx: ctx, mode: mode, start: start, bufs: getBuffers()}, req: &req}
	defer putBuffers(t.c.bufs)
	for _, pr := range prompts {
		t.choices = append(t.choices, req.answer(p.opts.Deltas, pr, stops))
		t.prompt += pr.tokens
	}
	t.id = string(appendRandomHex([]byte("cmpl-")))
	if req.Stream {
		out = t.stream()
	} else {
		out = t.complete()
	}
	if out != outCompleted {
		panic(http.ErrAbortHandler)
	}
}

// textCompletion is one completion request being answered (after
// validation); c carries the writer, timing and mode helpers of chat.
type textCompletion struct {
	c       chat
	req     *completionRequest
	id      string
	prompt  int
	choices []textChoice
}

// tokens is the number of deltas over all choices.
func (t *textCompletion) tokens() int {
	n := 0
	for _, c := range t.choices {
		n += len(c.deltas)
	}
	return n
}

// appendHead appends the object's start, up to and including "choices":[.
func (t *textCompletion) appendHead(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, t.id...)
	b = append(b, `","object":"text_completion","created":`...)
	b = strconv.AppendInt(b, t.c.start.Unix(), 10)
	b = append(b, `,"model":`...)
	b = append(b, t.c.p.modelJSON...)
	return append(b, `,"choices":[`...)
}

// appendChoice appends one choice object.
func (t *textCompletion) appendChoice(b []byte, index int, text string, deltas []string, offset int, finish, stopReason string) []byte {
	b = append(b, `{"index":`...)
	b = strconv.AppendInt(b, int64(index), 10)
	b = append(b, `,"text":`...)
	b = append(b, jsonString(text)...)
	b = append(b, `,"logprobs":`...)
	b = t.appendLogprobs(b, deltas, offset)
	b = append(b, `,"finish_reason":`...)
	b = appendNullable(b, finish)
	b = append(b, `,"stop_reason":`...)
	b = appendNullable(b, stopReason)
	return append(b, '}')
}

// appendLogprobs appends the logprobs of deltas (null unless requested).
func (t *textCompletion) appendLogprobs(b []byte, deltas []string, offset int) []byte {
	if t.req.Logprobs == nil || len(deltas) == 0 {
		return append(b, "null"...)
	}
	var v struct {
		TextOffset    []int                `json:"text_offset"`
		TokenLogprobs []float64            `json:"token_logprobs"`
		Tokens        []string             `json:"tokens"`
		TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	}
	for _, d := range deltas {
		v.TextOffset = append(v.TextOffset, offset)
		v.TokenLogprobs = append(v.TokenLogprobs, -0.25)
		v.Tokens = append(v.Tokens, d)
		v.TopLogprobs = append(v.TopLogprobs, map[string]float64{d: -0.25})
		offset += len(d)
	}
	raw, _ := json.Marshal(v)
	return append(b, raw...)
}

func appendNullable(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return append(b, jsonString(s)...)
}

// complete answers a non-streaming request.
func (t *textCompletion) complete() outcome {
	c := &t.c
	n := t.tokens()
	if !c.wait(c.p.opts.TTFT) {
		return outCancelled
	}
	c.s.ttft.observe(time.Since(c.start))
	if n > 1 && !c.wait(time.Duration(n-1)*c.p.opts.Pace) {
		return outCancelled
	}
	c.s.promptTokens.Add(int64(t.prompt))
	c.s.generationTokens.Add(int64(n))
	b := t.appendHead(c.bufs.out[:0])
	for i, ch := range t.choices {
		if i > 0 {
			b = append(b, ',')
		}
		b = t.appendChoice(b, i, ch.echo+strings.Join(ch.deltas, ""), ch.deltas, len(ch.echo), ch.finish, ch.stopReason)
	}
	b = append(b, "],"...)
	b = appendUsage(b, t.prompt, n)
	b = append(b, '}')
	c.bufs.out = b

	c.w.Header()["Content-Type"] = hdrJSON
	switch c.mode {
	case ModeCut:
		c.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		c.w.WriteHeader(http.StatusOK)
		c.bufs.out = b[:len(b)/2]
		c.send() //nolint:errcheck // the connection is dropped next anyway
		return outAborted
	case ModeMalformed:
		c.bufs.out = b[:len(b)/2]
	}
	c.w.WriteHeader(http.StatusOK)
	if _, err := c.w.Write(c.bufs.out); err != nil {
		return outCancelled
	}
	return outCompleted
}

// frames are the stream's chunk frames: per step, one chunk for each
// choice that still has one (an echo chunk first, if asked), the last
// chunk of a choice carrying its finish_reason.
func (t *textCompletion) frames() [][]byte {
	per := make([][]string, len(t.choices))
	steps := 0
	for i, ch := range t.choices {
		var texts []string
		if t.req.Echo {
			texts = append(texts, ch.echo)
		}
		texts = append(texts, ch.deltas...)
		if len(texts) == 0 {
			texts = []string{""}
		}
		per[i] = texts
		steps = max(steps, len(texts))
	}
	var out [][]byte
	offsets := make([]int, len(t.choices))
	for step := range steps {
		for i, texts := range per {
			if step >= len(texts) {
				continue
			}
			ch := t.choices[i]
			finish, stop := "", ""
			if step == len(texts)-1 {
				finish, stop = ch.finish, ch.stopReason
			}
			var lp []string
			if !(t.req.Echo && step == 0) && texts[step] != "" {
				lp = texts[step : step+1]
			}
			b := append([]byte("data: "), t.appendHead(nil)...)
			b = t.appendChoice(b, i, texts[step], lp, offsets[i], finish, stop)
			b = append(b, "]}\n\n"...)
			offsets[i] += len(texts[step])
			out = append(out, b)
		}
	}
	return out
}

// stream answers a streaming request, bent by the failure mode.
func (t *textCompletion) stream() outcome {
	c := &t.c
	p := c.p
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
	frames := t.frames()
	// Headers go out at once; the first chunk waits for the first token.
	if p.opts.TTFT > 0 {
		if c.send() != nil || !c.wait(p.opts.TTFT) {
			return outCancelled
		}
	}
	c.s.ttft.observe(time.Since(c.start))
	malformedAt, stopAt := -1, -1
	switch c.mode {
	case ModeMalformed:
		malformedAt = len(frames) / 2
	case ModeCut, ModeMidstreamError:
		stopAt = min(p.opts.CutAfter, len(frames))
	}
	for i := 0; i < len(frames); i++ {
		if i == malformedAt {
			c.raw([]byte("data: {\"id\":\"" + t.id + "\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\"<malformed chunk\n\n"))
		}
		if i == stopAt {
			break
		}
		if i > 0 && p.opts.Pace > 0 {
			if c.send() != nil || !c.wait(p.opts.Pace) {
				c.s.generationTokens.Add(int64(i))
				return outCancelled
			}
		}
		c.raw(frames[i])
	}
	if stopAt >= 0 {
		c.s.generationTokens.Add(int64(stopAt))
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
	n := t.tokens()
	c.s.promptTokens.Add(int64(t.prompt))
	c.s.generationTokens.Add(int64(n))
	if t.req.StreamOptions.IncludeUsage {
		b := append([]byte("data: "), t.appendHead(nil)...)
		b = append(b, "],"...)
		b = appendUsage(b, t.prompt, n)
		c.raw(append(b, "}\n\n"...))
	}
	if c.mode != ModeNoDone {
		c.raw(frameDone)
	}
	if c.send() != nil {
		return outCancelled
	}
	return outCompleted
}
