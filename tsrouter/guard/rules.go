package guard

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// rules is the "rules" provider: the operator's own patterns — regular
// expressions and keyword lists — each with an action (block, mask, flag,
// allow) and a category. An allow rule's matches are exempt from every
// other rule (an allow-list: "internal.example.com is fine to mention").
//
//	[[guardrails.providers.options.rules]]
//	name = "project-nightingale"
//	keywords = ["Nightingale", "NGALE"]   # whole words
//	action = "block"
//	category = "confidential"
//
//	[[guardrails.providers.options.rules]]
//	name = "employee_id"
//	pattern = 'EMP-\d{6}'
//	case_sensitive = true
//	action = "mask"
//
// Keywords match whole words, case-insensitively unless case_sensitive
// (ASCII folding). A pattern's matches must be at most max_match bytes
// (default 64): the streaming gate holds back max_match-1 bytes of an
// answer for it.
type rules struct {
	name        string
	list        []rule
	placeholder string
	// regexHold is the longest max_match-1 of the regex rules (0: none).
	regexHold int
}

type rule struct {
	name     string
	act      Action
	category string
	re       *regexp.Regexp
	keywords []string // folded unless caseSensitive
	fold     bool
	maxMatch int
}

var ruleKeys = map[string]bool{"name": true, "pattern": true, "keywords": true, "case_sensitive": true, "action": true, "category": true, "max_match": true}

func newRules(pc ProviderConfig, _ Deps) (Provider, error) {
	p := &rules{name: pc.Name, placeholder: "<REDACTED:{TYPE}>"}
	for k, v := range pc.Options {
		switch k {
		case "placeholder_format":
			s, ok := v.(string)
			if !ok || s == "" {
				return nil, errors.New("options.placeholder_format: must be a non-empty string")
			}
			p.placeholder = s
		case "rules":
			list, ok := v.([]any)
			if !ok {
				return nil, errors.New("options.rules: must be an array of tables")
			}
			for i, e := range list {
				m, ok := e.(map[string]any)
				if !ok {
					return nil, fmt.Errorf("options.rules[%d]: must be a table", i)
				}
				r, err := parseRule(m)
				if err != nil {
					return nil, fmt.Errorf("options.rules[%d]: %w", i, err)
				}
				if r.re != nil {
					p.regexHold = max(p.regexHold, r.maxMatch-1)
				}
				p.list = append(p.list, r)
			}
		default:
			return nil, fmt.Errorf("options.%s: unknown option of a rules provider", k)
		}
	}
	if len(p.list) == 0 {
		return nil, errors.New("options.rules: a rules provider needs at least one rule")
	}
	return p, nil
}

func parseRule(m map[string]any) (rule, error) {
	for k := range m {
		if !ruleKeys[k] {
			return rule{}, fmt.Errorf("unknown field %q", k)
		}
	}
	r := rule{fold: true, maxMatch: 64, category: "custom"}
	r.name, _ = m["name"].(string)
	if r.name == "" {
		return rule{}, errors.New("name: required")
	}
	if cs, ok := m["case_sensitive"]; ok {
		b, ok := cs.(bool)
		if !ok {
			return rule{}, errors.New("case_sensitive: must be true or false")
		}
		r.fold = !b
	}
	a, err := parseAction(m["action"], "action", "block", "mask", "flag", "allow")
	if err != nil {
		return rule{}, err
	}
	r.act = a
	if c, ok := m["category"]; ok {
		if r.category, _ = c.(string); r.category == "" {
			return rule{}, errors.New("category: must be a non-empty string")
		}
	}
	if mm, ok := m["max_match"]; ok {
		n, ok := mm.(int64)
		if !ok || n < 1 || n > 4096 {
			return rule{}, errors.New("max_match: must be an integer from 1 to 4096")
		}
		r.maxMatch = int(n)
	}
	pat, hasPat := m["pattern"].(string)
	kws, hasKw := m["keywords"].([]any)
	switch {
	case hasPat == hasKw:
		return rule{}, errors.New("needs exactly one of pattern or keywords")
	case hasPat:
		if r.fold {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return rule{}, fmt.Errorf("pattern: %v", err)
		}
		r.re = re
	default:
		for i, k := range kws {
			s, ok := k.(string)
			if !ok || s == "" {
				return rule{}, fmt.Errorf("keywords[%d]: must be a non-empty string", i)
			}
			if r.fold {
				s = asciiLower(s)
			}
			r.keywords = append(r.keywords, s)
		}
	}
	return r, nil
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func (p *rules) Name() string { return p.name }
func (p *rules) Type() string { return "rules" }

func (p *rules) matches(s string, _ int, eof bool, out []match) ([]match, int) {
	hold := len(s)
	if !eof && p.regexHold > 0 {
		hold = max(0, len(s)-p.regexHold)
	}
	var folded string
	start := len(out)
	var allows []Span
	for i := range p.list {
		r := &p.list[i]
		add := func(a, b int) {
			if !eof && b == len(s) {
				hold = min(hold, a)
				return
			}
			if r.act == Allow {
				allows = append(allows, Span{Start: a, End: b})
				return
			}
			m := match{Span: Span{Start: a, End: b, Type: r.name, Score: 1}, act: r.act, category: r.category}
			if r.act == Transform {
				m.placeholder = strings.ReplaceAll(p.placeholder, "{TYPE}", strings.ToUpper(r.name))
			}
			out = append(out, m)
		}
		if r.re != nil {
			for _, loc := range r.re.FindAllStringIndex(s, -1) {
				add(loc[0], loc[1])
			}
			continue
		}
		hay := s
		if r.fold {
			if folded == "" {
				folded = asciiLower(s)
			}
			hay = folded
		}
		for _, kw := range r.keywords {
			for from := 0; ; {
				k := strings.Index(hay[from:], kw)
				if k < 0 {
					break
				}
				a := from + k
				b := a + len(kw)
				from = a + 1
				if a > 0 && isAlnum(hay[a-1]) || b < len(hay) && isAlnum(hay[b]) {
					continue
				}
				add(a, b)
			}
			if !eof {
				// A tail that is the start of the keyword, at a word start.
				for l := min(len(kw)-1, len(hay)); l > 0; l-- {
					a := len(hay) - l
					if hay[a:] == kw[:l] && (a == 0 || !isAlnum(hay[a-1])) {
						hold = min(hold, a)
						break
					}
				}
			}
		}
	}
	if len(allows) > 0 {
		kept := out[:start]
		for _, m := range out[start:] {
			exempt := false
			for _, a := range allows {
				if m.Start < a.End && a.Start < m.End {
					exempt = true
					break
				}
			}
			if !exempt {
				kept = append(kept, m)
			}
		}
		out = kept
	}
	return out, hold
}

// Check applies the rules to the texts it may rewrite (all of an input,
// the answer of an output).
func (p *rules) Check(_ context.Context, c *Content) (Verdict, error) {
	var v Verdict
	for i := c.rewritable(); i < len(c.Texts); i++ {
		text := c.Texts[i].Text
		ms, _ := p.matches(text, 0, true, nil)
		if len(ms) > 0 {
			v.apply(c, i, text, ms)
		}
	}
	if v.Action == Transform && v.Category == "" {
		v.Category = "custom"
	}
	return v, nil
}
