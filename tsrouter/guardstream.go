package tsrouter

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// streamGuard is a streamed answer's output stage: one guard.Gate per
// text of the answer (a choice's content, a tool call's arguments, an
// Anthropic content block), fed from the serve's events before they are
// written. Events that carry no text pass as they are; an event whose
// text is held back entirely is dropped until its text is released.
type streamGuard struct {
	ctx   context.Context
	e     *guard.Engine
	conv  []guard.Text
	model string
	extra []string
	gates map[string]*guard.Gate
	// kinds remembers an Anthropic block's delta type by key.
	kinds map[string]string
	order []string
	note  *guardNote
}

// streamGuardFor returns the output gate of a streamed answer, or nil
// when no output provider applies (then the relay is byte for byte).
func (h *Handler) streamGuardFor(ctx context.Context, rec *record, q *inference) *streamGuard {
	e := h.guardrails()
	if e == nil {
		return nil
	}
	extra := guardExtra(rec)
	if !e.Active(guard.Output, extra) {
		return nil
	}
	return &streamGuard{ctx: ctx, e: e, conv: h.conversation(q), model: q.alias, extra: extra,
		gates: map[string]*guard.Gate{}, kinds: map[string]string{}, note: rec.guardNote()}
}

func (sg *streamGuard) gate(key string) *guard.Gate {
	g, ok := sg.gates[key]
	if g == nil {
		// New, or flushed already (more text of a reasoning block).
		g = sg.e.NewGate(sg.conv, sg.model, sg.extra)
		sg.gates[key] = g
		if !ok {
			sg.order = append(sg.order, key)
		}
	}
	return g
}

func (sg *streamGuard) feed(key, s string) (string, error) {
	out, err := sg.gate(key).Feed(sg.ctx, s)
	if err != nil {
		sg.noteGate(key)
	}
	return out, err
}

func (sg *streamGuard) flush(key string) (string, error) {
	g := sg.gates[key]
	if g == nil {
		return "", nil
	}
	out, err := g.Flush(sg.ctx)
	sg.noteGate(key)
	return out, err
}

// noteGate adds a finished gate's verdicts to the record, once.
func (sg *streamGuard) noteGate(key string) {
	g := sg.gates[key]
	if g == nil {
		return
	}
	sg.note.add(guard.Output, g.Result())
	sg.gates[key] = nil
}

// flushPrefix flushes every open gate whose key starts with prefix, in
// the order they opened.
func (sg *streamGuard) flushPrefix(prefix string) (map[string]string, error) {
	var out map[string]string
	for _, k := range sg.order {
		if !strings.HasPrefix(k, prefix) || sg.gates[k] == nil {
			continue
		}
		s, err := sg.flush(k)
		if err != nil {
			return nil, err
		}
		if s != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = s
		}
	}
	return out, nil
}

func decodeEvent(data []byte) (map[string]any, bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var m map[string]any
	if d.Decode(&m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func encodeEvent(m map[string]any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(m)
	return bytes.TrimRight(b.Bytes(), "\n")
}

func numKey(v any) string {
	if n, ok := v.(json.Number); ok {
		return n.String()
	}
	return "0"
}

// openAIChunk gates an OpenAI chunk (chat: delta.content and tool call
// arguments; completions: text). It returns the chunk to send (nil: send
// nothing now).
func (sg *streamGuard) openAIChunk(data []byte) ([]byte, error) {
	if out, ok, err := sg.fastOpenAIChunk(data); ok || err != nil {
		return out, err
	}
	m, ok := decodeEvent(data)
	if !ok {
		return data, nil
	}
	choices, _ := m["choices"].([]any)
	changed, empty := false, true
	for _, c := range choices {
		ch, _ := c.(map[string]any)
		if ch == nil {
			continue
		}
		idx := numKey(ch["index"])
		finished := ch["finish_reason"] != nil
		if t, ok := ch["text"].(string); ok {
			out, err := sg.feed("x"+idx, t)
			if err != nil {
				return nil, err
			}
			if finished {
				rest, err := sg.flush("x" + idx)
				if err != nil {
					return nil, err
				}
				out += rest
			}
			ch["text"], changed = out, true
			empty = empty && out == "" && t != "" && !finished
			continue
		}
		delta, _ := ch["delta"].(map[string]any)
		if delta == nil {
			empty = false
			continue
		}
		if t, ok := delta["content"].(string); ok {
			// The answer starts: what reasoning is held goes out first.
			for _, rk := range [...]string{"reasoning", "reasoning_content"} {
				if _, more := delta[rk].(string); more || sg.gates["r"+idx+rk] == nil {
					continue
				}
				rest, err := sg.flush("r" + idx + rk)
				if err != nil {
					return nil, err
				}
				if rest != "" {
					delta[rk], changed = rest, true
				}
			}
			out, err := sg.feed("c"+idx, t)
			if err != nil {
				return nil, err
			}
			delta["content"], changed = out, true
			empty = empty && out == "" && t != "" && len(delta) == 1
		} else {
			empty = false
		}
		// Reasoning is the model's text too (vLLM "reasoning",
		// "reasoning_content"): gated on its own.
		for _, rk := range [...]string{"reasoning", "reasoning_content"} {
			if t, ok := delta[rk].(string); ok {
				out, err := sg.feed("r"+idx+rk, t)
				if err != nil {
					return nil, err
				}
				delta[rk], changed = out, true
			}
		}
		if tcs, ok := delta["tool_calls"].([]any); ok {
			for _, tc := range tcs {
				tm, _ := tc.(map[string]any)
				fn, _ := tm["function"].(map[string]any)
				if a, ok := fn["arguments"].(string); ok {
					out, err := sg.feed("t"+idx+"."+numKey(tm["index"]), a)
					if err != nil {
						return nil, err
					}
					fn["arguments"], changed = out, true
				}
			}
			empty = false
		}
		if finished {
			empty = false
			rest, err := sg.flushPrefix("c" + idx)
			if err != nil {
				return nil, err
			}
			if s := rest["c"+idx]; s != "" {
				prev, _ := delta["content"].(string)
				delta["content"], changed = prev+s, true
			}
			for _, rk := range [...]string{"reasoning", "reasoning_content"} {
				rest, err := sg.flush("r" + idx + rk)
				if err != nil {
					return nil, err
				}
				if rest != "" {
					prev, _ := delta[rk].(string)
					delta[rk], changed = prev+rest, true
				}
			}
			tools, err := sg.flushPrefix("t" + idx + ".")
			if err != nil {
				return nil, err
			}
			for k, s := range tools {
				var n json.Number = json.Number(strings.TrimPrefix(k, "t"+idx+"."))
				tcs, _ := delta["tool_calls"].([]any)
				delta["tool_calls"] = append(tcs, map[string]any{"index": n, "function": map[string]any{"arguments": s}})
				changed = true
			}
		}
	}
	if len(choices) == 0 {
		empty = false
	}
	if empty {
		return nil, nil
	}
	if !changed {
		return data, nil
	}
	return encodeEvent(m), nil
}

// openAITail is what the gates still hold when a stream ends without a
// finish_reason: one chunk with it, or nil.
func (sg *streamGuard) openAITail() ([]byte, error) {
	rest, err := sg.flushPrefix("")
	if err != nil || len(rest) == 0 {
		return nil, err
	}
	var choices []any
	for _, k := range sg.order {
		s := rest[k]
		if s == "" {
			continue
		}
		switch k[0] {
		case 'x':
			choices = append(choices, map[string]any{"index": json.Number(k[1:]), "text": s})
		case 'c':
			choices = append(choices, map[string]any{"index": json.Number(k[1:]), "delta": map[string]any{"content": s}})
		case 'r':
			idx := strings.TrimRight(k[1:], "abcdefghijklmnopqrstuvwxyz_")
			choices = append(choices, map[string]any{"index": json.Number(idx), "delta": map[string]any{k[1+len(idx):]: s}})
		case 't':
			c, t, _ := strings.Cut(k[1:], ".")
			choices = append(choices, map[string]any{"index": json.Number(c), "delta": map[string]any{"tool_calls": []any{
				map[string]any{"index": json.Number(t), "function": map[string]any{"arguments": s}}}}})
		}
	}
	return encodeEvent(map[string]any{"object": "chat.completion.chunk", "choices": choices}), nil
}

// gatedOpenAIRelay is RelayOpenAI with the output gate: chunks are
// re-encoded when their text changes (the model set to the caller's).
func gatedOpenAIRelay(w io.Writer, f backends.Flusher, s *backends.Stream, modelJSON []byte, sg *streamGuard, dropUsage bool) (st backends.RelayStats, _ error) {
	write := func(data []byte) error {
		if modelJSON != nil {
			if a, b, ok := jsonobj.Find(data, "model"); ok {
				data = jsonobj.ReplaceValue(nil, data, a, b, modelJSON)
			}
		}
		n, err := w.Write(append(append([]byte("data: "), data...), '\n', '\n'))
		st.Events++
		st.Bytes += int64(n)
		if err != nil {
			return backends.ErrClientGone
		}
		return nil
	}
	for {
		_, data, err := s.Next()
		if err == io.EOF {
			tail, err := sg.openAITail()
			if err != nil {
				return st, err
			}
			if tail != nil {
				if err := write(tail); err != nil {
					return st, err
				}
			}
			return st, nil
		}
		if err != nil {
			return st, err
		}
		if dropUsage && s.UsageOnly() {
			// The router asked for this chunk (usage accounting); the
			// caller did not.
			continue
		}
		out, err := sg.openAIChunk(data)
		if err != nil {
			return st, err
		}
		if out != nil {
			if err := write(out); err != nil {
				return st, err
			}
		}
		if !s.Buffered() {
			if err := f.Flush(); err != nil {
				return st, backends.ErrClientGone
			}
		}
	}
}

// gatedAnthropicRelay is RelayAnthropic with the output gate: text and
// tool input deltas are gated per content block; what a block's gate
// still holds goes out as one more delta before its content_block_stop.
func gatedAnthropicRelay(w io.Writer, f backends.Flusher, s *backends.Stream, modelJSON []byte, sg *streamGuard) (st backends.RelayStats, _ error) {
	write := func(name string, m map[string]any) error {
		n, err := w.Write(append(append([]byte("event: "+name+"\ndata: "), encodeEvent(m)...), '\n', '\n'))
		st.Events++
		st.Bytes += int64(n)
		if err != nil {
			return backends.ErrClientGone
		}
		return nil
	}
	for {
		ev, data, err := s.Next()
		if err == io.EOF {
			return st, nil
		}
		if err != nil {
			return st, err
		}
		m, ok := decodeEvent(data)
		typ, _ := m["type"].(string)
		if !ok {
			typ = ""
		}
		switch typ {
		case "message_start":
			if msg, ok := m["message"].(map[string]any); ok && modelJSON != nil {
				var model string
				json.Unmarshal(modelJSON, &model)
				msg["model"] = model
			}
			err = write(typ, m)
		case "content_block_delta":
			key := "a" + numKey(m["index"])
			delta, _ := m["delta"].(map[string]any)
			field := "text"
			switch delta["type"] {
			case "input_json_delta":
				field = "partial_json"
			case "thinking_delta":
				field = "thinking"
			}
			t, ok := delta[field].(string)
			if !ok {
				err = write(typ, m)
				break
			}
			sg.kinds[key] = field
			out, ferr := sg.feed(key, t)
			if ferr != nil {
				return st, ferr
			}
			if out != "" {
				delta[field] = out
				err = write(typ, m)
			}
		case "content_block_stop":
			key := "a" + numKey(m["index"])
			rest, ferr := sg.flush(key)
			if ferr != nil {
				return st, ferr
			}
			if rest != "" {
				dt, field := "text_delta", "text"
				switch sg.kinds[key] {
				case "partial_json":
					dt, field = "input_json_delta", "partial_json"
				case "thinking":
					dt, field = "thinking_delta", "thinking"
				}
				if err = write("content_block_delta", map[string]any{"type": "content_block_delta", "index": m["index"],
					"delta": map[string]any{"type": dt, field: rest}}); err != nil {
					return st, err
				}
			}
			err = write(typ, m)
		default:
			n, werr := w.Write(ev)
			st.Events++
			st.Bytes += int64(n)
			if werr != nil {
				err = backends.ErrClientGone
			}
		}
		if err != nil {
			return st, backends.ErrClientGone
		}
		if !s.Buffered() {
			if err := f.Flush(); err != nil {
				return st, backends.ErrClientGone
			}
		}
	}
}

// fastOpenAIChunk is openAIChunk for the common chunk — one choice whose
// delta carries a content string and no tool calls, not the last — done
// on the bytes: the content value is replaced in place, nothing else is
// decoded. ok is false for any other chunk (the general path takes it).
func (sg *streamGuard) fastOpenAIChunk(data []byte) (out []byte, ok bool, _ error) {
	cs, ce, found := jsonobj.Find(data, "choices")
	if !found {
		return nil, false, nil
	}
	choices := data[cs:ce]
	it := jsonobj.ElementIter(choices)
	choice, more := it.Element()
	if !more {
		return nil, false, nil
	}
	if _, two := it.Element(); two {
		return nil, false, nil
	}
	var delta, index []byte
	mi := jsonobj.MemberIter(choice)
	for {
		k, v, more := mi.Member()
		if !more {
			break
		}
		switch string(k) {
		case "delta":
			delta = v
		case "index":
			index = v
		case "finish_reason":
			if string(v) != "null" {
				return nil, false, nil
			}
		case "text":
			return nil, false, nil
		}
	}
	if delta == nil || string(index) != "0" && index != nil {
		return nil, false, nil
	}
	var content []byte
	members := 0
	di := jsonobj.MemberIter(delta)
	for {
		k, v, more := di.Member()
		if !more {
			break
		}
		members++
		switch string(k) {
		case "content":
			content = v
		case "role":
		default:
			// reasoning, reasoning_content, tool_calls, anything a serve
			// adds: text this path does not gate goes the general way.
			if string(v) != "null" {
				return nil, false, nil
			}
		}
	}
	if len(content) < 2 || content[0] != '"' {
		return nil, false, nil
	}
	for k, g := range sg.gates {
		if g != nil && k != "c0" {
			return nil, false, nil // another text is held: the general path flushes it
		}
	}
	var text string
	if bytes.IndexByte(content, '\\') < 0 {
		text = string(content[1 : len(content)-1])
	} else if json.Unmarshal(content, &text) != nil {
		return nil, false, nil
	}
	released, err := sg.feed("c0", text)
	if err != nil {
		return nil, true, err
	}
	if released == "" && text != "" && members == 1 {
		return nil, true, nil // all held back: nothing to send yet
	}
	if released == text {
		return data, true, nil
	}
	// content is a subslice of data: its offset is the capacity it lost.
	start := cap(data) - cap(content)
	return jsonobj.ReplaceValue(nil, data, start, start+len(content), jsonobj.String(released)), true, nil
}
