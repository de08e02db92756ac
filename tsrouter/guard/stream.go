package guard

import (
	"context"
	"strings"
)

// The streaming output gate. A streamed answer reaches the caller in
// deltas; the gate is fed each delta and returns the text that is safe to
// release now.
//
// Pattern providers (pii, rules) run incrementally: the gate keeps back
// only the shortest tail that could still become or extend a match (for
// the built-in scanners: a trailing word that could be an email's local
// part, ≤ 64 bytes; a digit run that could be a card or phone, ≤ 40; a
// key prefix, ≤ 512; for a rules pattern, max_match-1 bytes; for a
// keyword, a tail that starts it) and releases everything before it at
// once, masked. A PEM private key block is held until its END line. The
// tail held is bounded by max_hold: an answer that would need more is
// refused (a Block of category pii), never released unchecked. Flush
// releases the rest at the end.
//
// Model-based providers (guard_model, webhook) cannot be run per byte:
// with output_check = "window" every output_window bytes are checked
// before they are released (the caller waits one provider round trip per
// window); with "end" text is released at once and the whole answer is
// checked when it ends — a block then ends the stream with an error event
// but cannot take back what was sent.

// ctxBytes is how much released text the gate keeps as look-behind, so a
// match's boundaries are judged as they would be on the whole text.
const ctxBytes = 80

// BlockError ends a stream (or refuses a request) on a Block verdict. It
// names the provider and category, never the text.
type BlockError struct {
	Provider, Category string
	// Message is a webhook's message for the caller ("" for none).
	Message string
	// Unavailable: the provider failed under fail_closed (Result.Unavailable);
	// Cause is its error, for the operator's audit line.
	Unavailable bool
	Cause       error
}

func (b *BlockError) Error() string {
	return "blocked by guardrail " + b.Provider + " (category " + b.Category + ")"
}

// Gate is one streamed answer's output stage.
type Gate struct {
	e       *Engine
	pats    []patternProvider
	patIdx  []int // entry index of each pattern provider
	models  []int // entry indexes of the model-based providers
	extra   []string
	conv    []Text
	model   string
	monitor bool
	maxHold int

	// win is the last ≤ ctxBytes released bytes (as the serve sent them:
	// look-behind) followed by the text not yet released, from base on.
	win  string
	base int
	// answer is the released answer (model-based providers see it);
	// window is the text checked by the pattern stage but not yet by the
	// model-based one.
	answer   strings.Builder
	window   strings.Builder
	entities map[string]int
	acts     []Action // per pattern provider, the most severe seen
	cats     []string
	res      *Result
	blocked  *BlockError
	buf      []match
}

// NewGate returns the output gate for one streamed answer, or nil when no
// output provider applies to this caller. conv is the conversation, for
// model-based providers.
func (e *Engine) NewGate(conv []Text, model string, extra []string) *Gate {
	if !e.Active(Output, extra) {
		return nil
	}
	g := &Gate{e: e, extra: extra, conv: conv, model: model, monitor: e.Monitor(), maxHold: e.cfg.MaxHold}
	if g.maxHold <= 0 {
		g.maxHold = DefaultMaxHold
	}
	for i := range e.entries {
		en := &e.entries[i]
		if !en.applies(Output, extra) {
			continue
		}
		if pp, ok := en.p.(patternProvider); ok {
			g.pats = append(g.pats, pp)
			g.patIdx = append(g.patIdx, i)
		} else {
			g.models = append(g.models, i)
		}
	}
	g.acts = make([]Action, len(g.pats))
	g.cats = make([]string, len(g.pats))
	g.res = &Result{Enforced: !g.monitor}
	return g
}

// Feed takes the next delta of the answer and returns the text to release
// now. After an error (a block) the stream must end with the caller
// dialect's error event.
func (g *Gate) Feed(ctx context.Context, delta string) (string, error) {
	if g.blocked != nil {
		return "", g.blocked
	}
	g.win += delta
	out, err := g.step(false)
	if err != nil {
		return "", err
	}
	out, err = g.model_(ctx, out, false)
	if g.monitor {
		// Monitor mode changes nothing, timing included: the delta goes
		// out as it came, and the stage scans behind it for the record.
		return delta, err
	}
	return out, err
}

// Flush releases what the gate still holds, at the end of the answer, and
// records the gate's verdicts.
func (g *Gate) Flush(ctx context.Context) (string, error) {
	if g.blocked != nil {
		return "", g.blocked
	}
	out, err := g.step(true)
	if err != nil {
		return "", err
	}
	out, err = g.model_(ctx, out, true)
	g.finish()
	if g.monitor {
		return "", err // Feed released every delta already
	}
	return out, err
}

// Result is what the gate decided, for the record (after Flush or a
// block).
func (g *Gate) Result() *Result { return g.res }

// step runs the pattern providers over look + pending and releases the
// prefix no later text can change.
func (g *Gate) step(eof bool) (string, error) {
	buf, base := g.win, g.base
	if len(g.pats) == 0 {
		g.win, g.base = "", 0
		return buf[base:], nil
	}
	ms := g.buf[:0]
	hold := len(buf)
	for k, p := range g.pats {
		n := len(ms)
		var h int
		ms, h = p.matches(buf, base, eof, ms)
		hold = min(hold, h)
		for j := n; j < len(ms); j++ {
			ms[j].prov = k
		}
	}
	// Matches wholly in the look-behind were dealt with when released.
	kept := ms[:0]
	for _, m := range ms {
		if m.End > base {
			kept = append(kept, m)
		}
	}
	ms = resolve(kept)
	p := max(hold, base)
	for moved := true; moved; {
		moved = false
		for _, m := range ms {
			if m.Start < p && m.End > p {
				p, moved = max(m.Start, base), true
			}
		}
	}
	// The matches released now, shifted to the released text.
	rel := ms[:0]
	for _, m := range ms {
		if m.End <= p {
			m.Start, m.End = max(m.Start, base)-base, m.End-base
			rel = append(rel, m)
		}
	}
	g.buf = ms[:0]
	for _, m := range rel {
		if g.entities == nil {
			g.entities = map[string]int{}
		}
		g.entities[m.Type]++
		if m.act > g.acts[m.prov] {
			g.acts[m.prov] = m.act
			g.cats[m.prov] = m.category
		}
		if m.act == Block && !g.monitor {
			return "", g.block(g.patIdx[m.prov], m.category)
		}
	}
	out := buf[base:p]
	if !g.monitor && len(rel) > 0 {
		out = render(out, rel)
	}
	start := max(0, p-ctxBytes)
	g.win, g.base = buf[start:], p-start
	if len(g.win)-g.base > g.maxHold {
		if !g.monitor {
			return "", g.block(g.patIdx[0], CategoryPII)
		}
		// Monitor mode never holds an answer back for longer.
		out += g.win[g.base:]
		g.win, g.base = "", 0
	}
	return out, nil
}

// model_ runs the model-based providers on released text: per window or
// at the end.
func (g *Gate) model_(ctx context.Context, out string, eof bool) (string, error) {
	if len(g.models) == 0 {
		return out, nil
	}
	// Monitor mode checks once at the end: a window's round trip would
	// delay the stream, and monitor mode changes nothing.
	if g.e.cfg.OutputCheck == OutputAtEnd || g.monitor {
		g.answer.WriteString(out)
		if eof {
			if err := g.checkModels(ctx, g.answer.String()); err != nil {
				return out, err
			}
		}
		return out, nil
	}
	g.window.WriteString(out)
	if !eof && g.window.Len() < g.e.cfg.OutputWindow {
		return "", nil
	}
	w := g.window.String()
	g.window.Reset()
	if err := g.checkModels(ctx, g.answer.String()+w); err != nil {
		return "", err
	}
	g.answer.WriteString(w)
	return w, nil
}

func (g *Gate) checkModels(ctx context.Context, answer string) error {
	c := &Content{Stage: Output, Texts: append(append([]Text(nil), g.conv...), Text{Role: "assistant", Kind: KindMessage, Text: answer}), Answer: len(g.conv), Model: g.model}
	for _, i := range g.models {
		en := &g.e.entries[i]
		v, err := g.e.run(ctx, en, Output, c)
		g.res.Verdicts = append(g.res.Verdicts, Named{Provider: en.cfg.Name, Verdict: v, Err: err})
		if v.Action > g.res.Action {
			g.res.Action = v.Action
			if v.Action == Block || v.Action == Flag {
				g.res.Provider, g.res.Category, g.res.Message = en.cfg.Name, v.Category, v.Message
			}
		}
		if v.Action == Block && !g.monitor {
			g.finish()
			g.blocked = &BlockError{Provider: en.cfg.Name, Category: v.Category, Message: v.Message, Unavailable: err != nil, Cause: err}
			return g.blocked
		}
	}
	return nil
}

// block ends the stream on a pattern provider's block.
func (g *Gate) block(entryIdx int, category string) error {
	if category == "" {
		category = CategoryPII
	}
	name := g.e.entries[entryIdx].cfg.Name
	for k, i := range g.patIdx {
		if i == entryIdx {
			g.acts[k], g.cats[k] = Block, category
		}
	}
	g.finish()
	g.res.Action, g.res.Provider, g.res.Category = Block, name, category
	g.blocked = &BlockError{Provider: name, Category: category}
	return g.blocked
}

// finish counts the pattern providers' verdicts for the whole answer.
func (g *Gate) finish() {
	if g.pats == nil {
		return
	}
	for k := range g.pats {
		name := g.e.entries[g.patIdx[k]].cfg.Name
		v := Verdict{Action: g.acts[k], Category: g.cats[k], Entities: g.entities}
		if v.Action == Transform && v.Category == "" {
			v.Category = CategoryPII
		}
		if v.Action == Block && v.Category == "" {
			v.Category = CategoryPII
		}
		g.e.count(name, Output, v)
		if g.e.deps.Observe != nil {
			g.e.deps.Observe(name, Output, v, nil, 0)
		}
		g.res.Verdicts = append(g.res.Verdicts, Named{Provider: name, Verdict: v})
		if v.Action > g.res.Action {
			g.res.Action = v.Action
		}
	}
	g.res.Entities = g.entities
	g.pats = nil
}
