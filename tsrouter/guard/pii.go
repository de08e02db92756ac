package guard

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// match is a span with what the provider does about it.
type match struct {
	Span
	act Action // Transform (mask), Block or Flag
	// category of a rules match ("" for pii: CategoryPII).
	category string
	// placeholder replaces the span when act is Transform.
	placeholder string
	// prov is the index of the provider that found it (streaming gate).
	prov int
}

// patternProvider is a provider whose verdict is a function of spans in
// the text (pii, rules): the streaming gate runs these incrementally.
type patternProvider interface {
	Provider
	// matches appends the matches in s that start at from or later and
	// returns the hold (see scanPII): len(s) when eof.
	matches(s string, from int, eof bool, out []match) ([]match, int)
}

// spanAnalyzer is an external analyzer (Presidio's POST /analyze, see
// presidio.go) whose spans are merged with the built-in scanners'.
type spanAnalyzer interface {
	Analyze(ctx context.Context, text string) ([]Span, error)
}

// pii is the "pii" provider: the built-in scanners, per-entity actions and
// an optional external analyzer whose spans are merged in.
type pii struct {
	name        string
	def         Action
	actions     map[string]Action
	placeholder string
	external    spanAnalyzer
}

// The actions an entity or rule may take, as written in options.
var optionActions = map[string]Action{"allow": Allow, "flag": Flag, "mask": Transform, "block": Block}

func parseAction(v any, where string, allowed ...string) (Action, error) {
	s, _ := v.(string)
	for _, a := range allowed {
		if s == a {
			return optionActions[s], nil
		}
	}
	return 0, fmt.Errorf("%s: must be one of %s", where, strings.Join(allowed, ", "))
}

func newPII(pc ProviderConfig, d Deps) (Provider, error) {
	p := &pii{name: pc.Name, def: Transform, placeholder: "<REDACTED:{TYPE}>"}
	for k, v := range pc.Options {
		switch k {
		case "default_action":
			a, err := parseAction(v, "options.default_action", "mask", "block", "allow")
			if err != nil {
				return nil, err
			}
			p.def = a
		case "actions":
			m, ok := v.(map[string]any)
			if !ok {
				return nil, errors.New("options.actions: must be a table")
			}
			p.actions = map[string]Action{}
			for ent, av := range m {
				a, err := parseAction(av, "options.actions."+ent, "mask", "block", "allow")
				if err != nil {
					return nil, err
				}
				p.actions[strings.ToLower(ent)] = a
			}
		case "placeholder_format":
			s, ok := v.(string)
			if !ok || s == "" {
				return nil, errors.New("options.placeholder_format: must be a non-empty string")
			}
			p.placeholder = s
		case "external":
			ext, ok := v.(map[string]any)
			if !ok {
				return nil, errors.New("options.external: must be a table")
			}
			a, err := NewPresidio(ext)
			if err != nil {
				return nil, fmt.Errorf("options.external: %w", err)
			}
			if d.Transport != nil {
				a.UseTransport(d.Transport)
			}
			p.external = a
		default:
			return nil, fmt.Errorf("options.%s: unknown option of a pii provider", k)
		}
	}
	return p, nil
}

func (p *pii) Name() string { return p.name }
func (p *pii) Type() string { return "pii" }

func (p *pii) action(typ string) Action {
	if a, ok := p.actions[typ]; ok {
		return a
	}
	return p.def
}

func (p *pii) placeholderFor(typ string) string {
	return strings.ReplaceAll(p.placeholder, "{TYPE}", strings.ToUpper(typ))
}

func (p *pii) matches(s string, from int, eof bool, out []match) ([]match, int) {
	var buf [16]Span
	spans, hold := scanPII(s, from, eof, buf[:0])
	return p.toMatches(spans, out), hold
}

func (p *pii) toMatches(spans []Span, out []match) []match {
	for _, sp := range spans {
		a := p.action(sp.Type)
		if a == Allow {
			continue
		}
		m := match{Span: sp, act: a}
		if a == Transform {
			m.placeholder = p.placeholderFor(sp.Type)
		}
		out = append(out, m)
	}
	return out
}

// Check scans the texts a pii provider rewrites (all of an input, the
// answer of an output) and masks or blocks what it finds.
func (p *pii) Check(ctx context.Context, c *Content) (Verdict, error) {
	var v Verdict
	var buf [16]match
	for i := c.rewritable(); i < len(c.Texts); i++ {
		text := c.Texts[i].Text
		ms, _ := p.matches(text, 0, true, buf[:0])
		if p.external != nil {
			spans, err := p.external.Analyze(ctx, text)
			if err != nil {
				return Verdict{}, err
			}
			for k := range spans {
				spans[k].Type = strings.ToLower(spans[k].Type)
				if spans[k].Start < 0 || spans[k].End > len(text) || spans[k].Start >= spans[k].End {
					return Verdict{}, errors.New("external analyzer returned a span outside the text")
				}
			}
			ms = p.toMatches(spans, ms)
		}
		if len(ms) == 0 {
			continue
		}
		v.apply(c, i, text, ms)
	}
	if v.Action != Allow && v.Category == "" {
		v.Category = CategoryPII
	}
	return v, nil
}

// rewritable is the index of the first text a rewriting provider may
// change.
func (c *Content) rewritable() int {
	if c.Stage == Output {
		return min(max(c.Answer, 0), len(c.Texts))
	}
	return 0
}

// apply folds the matches of text i into the verdict: counts, the most
// severe action, and the masked text for a transform.
func (v *Verdict) apply(c *Content, i int, text string, ms []match) {
	ms = resolve(ms)
	if v.Entities == nil {
		v.Entities = map[string]int{}
	}
	masked := false
	for _, m := range ms {
		v.Entities[m.Type]++
		if m.act > v.Action {
			v.Action = m.act
			if m.act == Block || m.act == Flag {
				v.Category = m.category
				v.Reason = "matched " + m.Type
			}
		}
		if m.act == Transform {
			masked = true
		}
	}
	if v.Score == 0 {
		v.Score = 1
	}
	if !masked {
		return
	}
	if v.Texts == nil {
		v.Texts = make([]string, len(c.Texts))
		for k := range c.Texts {
			v.Texts[k] = c.Texts[k].Text
		}
	}
	v.Texts[i] = render(text, ms)
}

// resolve sorts matches by start and merges overlapping ones: the union
// is covered, the more severe action and the first one's type kept.
func resolve(ms []match) []match {
	for i := 1; i < len(ms); i++ {
		for j := i; j > 0 && (ms[j].Start < ms[j-1].Start || ms[j].Start == ms[j-1].Start && ms[j].End > ms[j-1].End); j-- {
			ms[j], ms[j-1] = ms[j-1], ms[j]
		}
	}
	out := ms[:0]
	for _, m := range ms {
		if n := len(out); n > 0 && m.Start < out[n-1].End {
			last := &out[n-1]
			last.End = max(last.End, m.End)
			if m.act > last.act {
				last.act, last.category, last.Type, last.placeholder = m.act, m.category, m.Type, m.placeholder
			}
			continue
		}
		out = append(out, m)
	}
	return out
}

// render writes s with every Transform match replaced by its placeholder.
func render(s string, ms []match) string {
	var b strings.Builder
	b.Grow(len(s))
	at := 0
	for _, m := range ms {
		if m.act != Transform {
			continue
		}
		b.WriteString(s[at:m.Start])
		b.WriteString(m.placeholder)
		at = m.End
	}
	b.WriteString(s[at:])
	return b.String()
}
