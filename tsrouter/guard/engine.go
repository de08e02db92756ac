package guard

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Deps are what providers need from the router.
type Deps struct {
	// Chat reaches a model on this host (guard_model).
	Chat ChatFunc
	// Now is the clock (nil: time.Now).
	Now Clock
	// Getenv reads a secret's environment variable (webhook bearer).
	Getenv func(string) string
	// Observe is told every provider verdict (metrics); nil for none.
	Observe func(provider string, stage Stage, v Verdict, err error, took time.Duration)
	// Transport carries the HTTP providers' calls (webhook, Presidio):
	// the router's, which reaches tailnet hosts through its tsnet node.
	// Nil: the host network only.
	Transport http.RoundTripper
}

// Constructor builds a provider of one type from its config.
type Constructor func(ProviderConfig, Deps) (Provider, error)

var constructors = map[string]Constructor{
	"pii":   newPII,
	"rules": newRules,
	"guard_model": func(pc ProviderConfig, d Deps) (Provider, error) {
		return NewGuardModel(pc.Name, pc.Options, d.Chat, d.Now)
	},
	"webhook": func(pc ProviderConfig, d Deps) (Provider, error) {
		p, err := NewWebhook(pc.Name, pc.Options, d.Getenv)
		if err != nil {
			return nil, err
		}
		if w, ok := p.(*Webhook); ok && d.Transport != nil {
			w.UseTransport(d.Transport)
		}
		return p, nil
	},
}

// Register adds a provider type (tests add scripted ones).
func Register(typ string, c Constructor) { constructors[typ] = c }

// entry is one configured, enabled provider.
type entry struct {
	cfg ProviderConfig
	p   Provider
}

// Engine runs the operator's providers. It is immutable once built; a
// reload builds a new one.
type Engine struct {
	cfg     Config
	entries []entry
	deps    Deps
	counts  sync.Map // countKey → *atomic.Int64
}

type countKey struct {
	Provider, Stage, Verdict, Category string
}

// New builds the engine of cfg; every enabled provider is constructed now,
// so a bad option fails the load (or keeps the old engine on reload).
func New(cfg Config, deps Deps) (*Engine, error) {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Getenv == nil {
		deps.Getenv = func(string) string { return "" }
	}
	e := &Engine{cfg: cfg, deps: deps}
	seen := map[string]bool{}
	for _, pc := range cfg.Providers {
		if seen[pc.Name] {
			return nil, fmt.Errorf("guardrails: duplicate provider name %q", pc.Name)
		}
		seen[pc.Name] = true
		if !pc.Enabled {
			continue
		}
		c, ok := constructors[pc.Type]
		if !ok {
			return nil, fmt.Errorf("guardrails provider %q: type %q is not built into this router", pc.Name, pc.Type)
		}
		p, err := c(pc, deps)
		if err != nil {
			return nil, fmt.Errorf("guardrails provider %q: %w", pc.Name, err)
		}
		e.entries = append(e.entries, entry{cfg: pc, p: p})
	}
	return e, nil
}

// Config is the configuration the engine was built from.
func (e *Engine) Config() Config { return e.cfg }

// Enabled reports whether the engine does anything at all.
func (e *Engine) Enabled() bool { return e != nil && e.cfg.Enabled && len(e.entries) > 0 }

// Monitor reports monitor mode: verdicts are recorded, nothing changes.
func (e *Engine) Monitor() bool { return e.cfg.Mode == ModeMonitor }

// applies reports whether a provider runs for a caller whose grant or key
// names extra.
func (en *entry) applies(stage Stage, extra []string) bool {
	if !en.cfg.Runs(stage) {
		return false
	}
	return en.cfg.Apply != ApplyOnRequest || slices.Contains(extra, en.cfg.Name)
}

// Unknown returns the first of names (a caller's grants and key) that no
// provider of the configuration has, enabled or not. A name the operator
// never configured is a mistake — most often a typo — and the caller it
// was meant to protect must not be served without it.
func (e *Engine) Unknown(names []string) (string, bool) {
	for _, n := range names {
		if !slices.ContainsFunc(e.cfg.Providers, func(p ProviderConfig) bool { return p.Name == n }) {
			return n, true
		}
	}
	return "", false
}

// Active reports whether any provider runs on stage for this caller.
func (e *Engine) Active(stage Stage, extra []string) bool {
	if !e.Enabled() {
		return false
	}
	for i := range e.entries {
		if e.entries[i].applies(stage, extra) {
			return true
		}
	}
	return false
}

// Named is one provider's verdict.
type Named struct {
	Provider string
	Verdict
	// Err is set when the provider failed (its on_error decided Verdict).
	Err error
}

// Result is the engine's answer for one stage of one request.
type Result struct {
	// Action is the combined verdict: the most severe. In monitor mode it
	// is what enforce would have done; Enforced says whether it acts.
	Action Action
	// Enforced is false in monitor mode.
	Enforced bool
	// Provider and Category name the provider and category of the
	// deciding verdict (for a block, a flag).
	Provider, Category string
	// Message is a webhook's message for the caller on a block.
	Message string
	// Unavailable says the deciding block is a provider's failure under
	// on_error = fail_closed, not a judgement of the text: the same
	// request may pass once the provider is back, so the caller is told
	// to retry (503), not that its request is refused (400).
	Unavailable bool
	// Verdicts are every provider's, in the order they ran.
	Verdicts []Named
	// Entities counts entity types over all providers.
	Entities map[string]int
	// Texts are the replacement texts when Action is Transform (one per
	// text of the Content).
	Texts []string
}

// Blocked reports whether the request or answer must be refused.
func (r *Result) Blocked() bool { return r.Enforced && r.Action == Block }

// Refusal describes the deciding block as the error a stream ends with,
// carrying the failed provider's error when the block is Unavailable.
func (r *Result) Refusal() *BlockError {
	b := &BlockError{Provider: r.Provider, Category: r.Category, Message: r.Message, Unavailable: r.Unavailable}
	if r.Unavailable {
		for _, v := range r.Verdicts {
			if v.Provider == r.Provider && v.Err != nil {
				b.Cause = v.Err
				break
			}
		}
	}
	return b
}

// Rewritten reports whether the text must be replaced by r.Texts.
func (r *Result) Rewritten() bool { return r.Enforced && r.Action == Transform && r.Texts != nil }

// Check runs every provider that applies to this caller on c. Providers
// run in configuration order, each seeing the text as the previous ones
// rewrote it; in enforce mode the first block ends the run.
func (e *Engine) Check(ctx context.Context, stage Stage, c *Content, extra []string) (*Result, error) {
	res := &Result{Enforced: !e.Monitor()}
	cur := c
	for i := range e.entries {
		en := &e.entries[i]
		if !en.applies(stage, extra) {
			continue
		}
		v, err := e.run(ctx, en, stage, cur)
		res.Verdicts = append(res.Verdicts, Named{Provider: en.cfg.Name, Verdict: v, Err: err})
		for k, n := range v.Entities {
			if res.Entities == nil {
				res.Entities = map[string]int{}
			}
			res.Entities[k] += n
		}
		if v.Action > res.Action || v.Action == Block && res.Provider == "" {
			res.Action = v.Action
			if v.Action == Block || v.Action == Flag {
				res.Provider, res.Category, res.Message = en.cfg.Name, v.Category, v.Message
				res.Unavailable = v.Action == Block && err != nil
			}
		}
		if v.Action == Transform && len(v.Texts) == len(cur.Texts) {
			next := *cur
			next.Texts = slices.Clone(cur.Texts)
			for k := range next.Texts {
				next.Texts[k].Text = v.Texts[k]
			}
			cur = &next
			res.Texts = v.Texts
		}
		if v.Action == Block && res.Enforced {
			break
		}
	}
	if res.Action == Transform && res.Texts == nil {
		res.Action = Flag
	}
	return res, nil
}

// run calls one provider with its timeout, thresholds and on_error, and
// counts the verdict.
func (e *Engine) run(ctx context.Context, en *entry, stage Stage, c *Content) (Verdict, error) {
	if en.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, en.cfg.Timeout)
		defer cancel()
	}
	start := time.Now()
	v, err := en.p.Check(ctx, c)
	took := time.Since(start)
	if err != nil {
		v = Verdict{Reason: "provider error"}
		if en.cfg.OnError == FailClosed {
			v = Verdict{Action: Block, Category: CategoryProviderError, Reason: "provider failed; on_error = fail_closed", Score: 1}
		}
	}
	if th, ok := en.cfg.CategoryThresholds[v.Category]; ok && (v.Action == Flag || v.Action == Block) && err == nil && v.Score < th {
		v = Verdict{Reason: "under the category threshold", Entities: v.Entities}
	}
	e.count(en.cfg.Name, stage, v)
	if e.deps.Observe != nil {
		e.deps.Observe(en.cfg.Name, stage, v, err, took)
	}
	return v, err
}

func (e *Engine) count(provider string, stage Stage, v Verdict) {
	k := countKey{provider, stage.String(), v.Action.String(), v.Category}
	c, ok := e.counts.Load(k)
	if !ok {
		c, _ = e.counts.LoadOrStore(k, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
}

// Count is one verdict counter.
type Count struct {
	Provider string `json:"provider"`
	Stage    string `json:"stage"`
	Verdict  string `json:"verdict"`
	Category string `json:"category,omitempty"`
	N        int64  `json:"count"`
}

// Counts returns the engine's verdict counters since it was built.
func (e *Engine) Counts() []Count {
	var out []Count
	e.counts.Range(func(k, v any) bool {
		ck := k.(countKey)
		out = append(out, Count{ck.Provider, ck.Stage, ck.Verdict, ck.Category, v.(*atomic.Int64).Load()})
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Provider+a.Stage+a.Verdict+a.Category < b.Provider+b.Stage+b.Verdict+b.Category
	})
	return out
}
