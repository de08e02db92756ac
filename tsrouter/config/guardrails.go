package config

import (
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/anvil-serving/anvil-router/tsrouter/guard"
)

// Guardrails is the [guardrails] table: the providers that check the text
// of requests and answers (tsrouter/guard). Absent or enabled = false, the
// router does no guardrail work.
type Guardrails = guard.Config

var (
	guardrailsKeys = []string{"enabled", "mode", "output_check", "output_window", "max_hold", "providers"}
	guardProvKeys  = []string{"name", "type", "enabled", "stages", "on_error", "apply", "timeout", "options", "category_thresholds"}
)

// ParseGuardrails reads only the [guardrails] table of a router file, for
// a reload that changes guardrails alone (a bad table keeps the old one).
func ParseGuardrails(name string, data []byte) (Guardrails, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return Guardrails{}, &Error{File: name, Problems: []Problem{syntaxProblem(err)}}
	}
	c := &checker{lines: indexLines(data)}
	g := defaultGuardrails()
	if t, ok := (table{c: c, m: doc}).sub("guardrails"); ok {
		g = parseGuardrails(t)
	}
	if len(c.problems) > 0 {
		sortProblems(c.problems)
		return Guardrails{}, &Error{File: name, Problems: c.problems}
	}
	return g, nil
}

func defaultGuardrails() Guardrails {
	return Guardrails{
		Mode:         guard.ModeEnforce,
		OutputCheck:  guard.OutputWindowed,
		OutputWindow: guard.DefaultOutputWindow,
		MaxHold:      guard.DefaultMaxHold,
	}
}

func parseGuardrails(t table) Guardrails {
	t.unknown(guardrailsKeys, "[guardrails]")
	g := defaultGuardrails()
	g.Enabled, _ = t.boolean("enabled")
	if m := t.oneOf("mode", guard.ModeEnforce, guard.ModeMonitor); m != "" {
		g.Mode = m
	}
	if m := t.oneOf("output_check", guard.OutputWindowed, guard.OutputAtEnd); m != "" {
		g.OutputCheck = m
	}
	g.OutputWindow = t.intIn("output_window", 16, 1<<20, guard.DefaultOutputWindow)
	g.MaxHold = t.intIn("max_hold", 64, 1<<20, guard.DefaultMaxHold)
	list, _ := t.tables("providers")
	names := map[string]bool{}
	for _, p := range list {
		pc := parseGuardProvider(p)
		if pc.Name != "" {
			if names[pc.Name] {
				p.c.report(p.path.key("name"), "duplicate provider name %q", pc.Name)
			}
			names[pc.Name] = true
		}
		g.Providers = append(g.Providers, pc)
	}
	return g
}

func parseGuardProvider(t table) guard.ProviderConfig {
	t.unknown(guardProvKeys, "[[guardrails.providers]]")
	t.required("name", "type")
	p := guard.ProviderConfig{Enabled: true, Input: true, Output: true, OnError: guard.FailOpen, Apply: guard.ApplyAll}
	p.Name = t.nonEmpty("name")
	if strings.ContainsAny(p.Name, " ,\t\n") {
		t.c.report(t.path.key("name"), "must not contain spaces or commas")
	}
	p.Type = t.oneOf("type", guard.ProviderTypes...)
	if b, ok := t.boolean("enabled"); ok {
		p.Enabled = b
	}
	if t.has("stages") {
		p.Input, p.Output = false, false
		stages := t.strings("stages")
		for i, s := range stages {
			switch s {
			case "input":
				p.Input = true
			case "output":
				p.Output = true
			default:
				t.c.report(t.path.key("stages").at(i), `must be "input" or "output", got %q`, s)
			}
		}
		if len(stages) == 0 {
			t.c.report(t.path.key("stages"), "must name at least one stage")
		}
	}
	if s := t.oneOf("on_error", guard.FailOpen, guard.FailClosed); s != "" {
		p.OnError = s
	}
	if s := t.oneOf("apply", guard.ApplyAll, guard.ApplyOnRequest); s != "" {
		p.Apply = s
	}
	p.Timeout = t.goDuration("timeout", 0)
	if o, ok := t.sub("options"); ok {
		p.Options = o.m
	}
	if ct, ok := t.sub("category_thresholds"); ok {
		p.CategoryThresholds = map[string]float64{}
		for _, k := range sortedKeys(ct.m) {
			v, ok := ct.number(k)
			if !ok {
				continue
			}
			if v < 0 || v > 1 {
				ct.c.report(ct.path.key(k), "must be between 0 and 1")
				continue
			}
			p.CategoryThresholds[k] = v
		}
	}
	return p
}
