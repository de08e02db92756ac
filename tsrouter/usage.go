package tsrouter

import (
	"strconv"
	"time"

	"github.com/anvil-serving/anvil-router/backends"
	"github.com/anvil-serving/anvil-router/backends/jsonobj"
	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/tsrouter/usage"
)

// Usage accounting: every metered request (the inference routes) is
// recorded once, when dispatch is done with it, into the usage store by
// the caller's identity; day budgets are checked before the request takes
// a slot. The views are /admin/stats, /admin/stats/usage, POST
// /admin/stats/reset and every caller's own /v1/usage.

// usageAliases are the model groups the store keeps: the routed aliases
// and the purpose and audio routes (recorded under their kind).
func usageAliases(set *backends.Set) (aliases []string, tiers map[string]string) {
	tiers = map[string]string{}
	for _, r := range set.Routes() {
		aliases = append(aliases, r.Alias)
		if t, ok := set.Lookup(r.Alias); ok {
			tiers[r.Alias] = t.ID
		}
	}
	return append(aliases, "embedding", "rerank", "stt", "tts"), tiers
}

// UsageOptions configure usage accounting ([admin.stats]).
type UsageOptions struct {
	// Store is where requests are counted; nil creates one with the
	// default retention window.
	Store *usage.Store
	// Disabled turns accounting off: nothing is counted, the views are
	// 404 and budgets are not enforced.
	Disabled bool
	// NoTokenTracking counts requests but not tokens.
	NoTokenTracking bool
	// Now is the clock of a store created here (tests; default time.Now).
	Now func() time.Time
}

// NewUsageStore is a store for set's aliases.
func NewUsageStore(set *backends.Set, retention time.Duration, now func() time.Time) *usage.Store {
	aliases, tiers := usageAliases(set)
	return usage.New(usage.Options{Retention: retention, Aliases: aliases, Tiers: tiers, Now: now})
}

// SetTokenTracking turns token counting on or off while serving
// ([admin.stats].token_tracking is reloaded on SIGHUP).
func (h *Handler) SetTokenTracking(on bool) { h.noTokenTracking.Store(!on) }

// Usage is the usage store (nil when accounting is off).
func (h *Handler) Usage() *usage.Store { return h.usage }

func (h *Handler) usageOn() bool { return h.usage != nil }

// budgetRef is one day budget a request is checked against and spends from.
type budgetRef struct {
	name string
	usage.Limits
}

// budgetsOf are the principal's budgets: its grants' (its own, or the
// shared bucket they name) and its key's.
func budgetsOf(p *policy.Principal) []budgetRef {
	var out []budgetRef
	if p == nil {
		return nil
	}
	if l := (usage.Limits{TokensPerDay: p.TokensPerDay, RequestsPerDay: p.RequestsPerDay}); l.Any() && p.Identity != nil {
		// A grant's budget belongs to the tailnet caller (the user, or a
		// tagged node), never to a key it presents: a new key must not
		// mean a new grant budget.
		name := p.Budget
		if name == "" {
			k, id := usage.KindUser, p.Identity.User
			if p.Identity.Tagged() || id == "" {
				k, id = usage.KindNode, p.Identity.Node
			}
			name = k.String() + ":" + id
		}
		out = append(out, budgetRef{name, l})
	}
	if k := p.Key; k != nil {
		if l := (usage.Limits{TokensPerDay: k.TokensPerDay, RequestsPerDay: k.RequestsPerDay}); l.Any() {
			name := k.Budget
			if name == "" {
				name = "key:" + k.ID
			}
			// A grant and a key naming one shared bucket spend from it
			// once, under the tighter limits.
			if len(out) == 1 && out[0].name == name {
				out[0].Limits = tighter(out[0].Limits, l)
				return out
			}
			out = append(out, budgetRef{name, l})
		}
	}
	return out
}

// tighter is the stricter of two limits, field by field (0 is none).
func tighter(a, b usage.Limits) usage.Limits {
	pick := func(x, y int64) int64 {
		if x == 0 || (y != 0 && y < x) {
			return y
		}
		return x
	}
	return usage.Limits{TokensPerDay: pick(a.TokensPerDay, b.TokensPerDay), RequestsPerDay: pick(a.RequestsPerDay, b.RequestsPerDay)}
}

// identityOf is the caller's own identity, the one /v1/usage shows: the
// API key when the request carried one, else the tailnet user (a tagged
// node: the node), else anonymous.
func identityOf(p *policy.Principal) (usage.Kind, string) {
	switch {
	case p == nil:
	case p.Key != nil:
		return usage.KindKey, p.Key.ID
	case p.Identity != nil && p.Identity.Tagged():
		return usage.KindNode, p.Identity.Node
	case p.Identity != nil && p.Identity.User != "":
		return usage.KindUser, p.Identity.User
	}
	return usage.KindAnonymous, usage.Anonymous
}

// checkBudget refuses a request whose caller is past a day budget; the
// budgets it passed are the ones the request spends from.
func (h *Handler) checkBudget(rec *record) error {
	bs := budgetsOf(rec.principal)
	over := func(b budgetRef, resets time.Time) error {
		secs := int((resets.Sub(h.usage.Now()) + time.Second - 1) / time.Second)
		return errBudgetExceeded(b.name, max(secs, 1)).withDetail("day budget " + b.name + " exceeded")
	}
	// All together (usage.AdmitAll): a refusal by one spends from none, and
	// callers in flight together cannot all pass the last request.
	ws := make([]usage.Want, len(bs))
	for i, b := range bs {
		ws[i] = usage.Want{Name: b.name, Limits: b.Limits}
	}
	if i, resets := h.usage.AdmitAll(ws); i >= 0 {
		return over(bs[i], resets)
	}
	for _, b := range bs {
		rec.budgets = append(rec.budgets, b.name)
	}
	return nil
}

// recordUsage counts one finished metered request.
func (h *Handler) recordUsage(w *recorder, rec *record) {
	var id usage.Identity
	if p := rec.principal; p != nil {
		if p.Identity != nil {
			id.Node = p.Identity.Node
			id.Tags = p.Identity.Tags
			if !p.Identity.Tagged() && p.Identity.User != policy.TaggedDevices {
				id.User = p.Identity.User
			}
		}
		if p.Key != nil {
			id.Key = p.Key.ID
		}
	}
	smp := usage.Sample{
		Alias:            rec.alias,
		Error:            w.status >= 400 || rec.outcome == "error",
		Streamed:         rec.streamed,
		Latency:          time.Since(rec.start),
		TTFT:             rec.ttft,
		Budgets:          rec.budgets,
		GuardrailBlocked: rec.reason == "guardrail_blocked",
	}
	// With token_tracking off the statistics leave tokens out, but a
	// request that draws on a budget still spends its tokens there.
	if noTokens := h.noTokenTracking.Load(); !noTokens || len(rec.budgets) > 0 {
		smp.BudgetTokensOnly = noTokens
		smp.InputTokens, smp.OutputTokens = int64(rec.promptTokens), int64(rec.compTokens)
		smp.CachedTokens, smp.ReasoningTokens = int64(rec.cachedTokens), int64(rec.reasoningTokens)
		if !rec.usageReported {
			if smp.OutputTokens == 0 && w.status < 400 && rec.reason != "" {
				// The router's estimate: a streamed event is about a token;
				// a whole reply about four bytes a token.
				if rec.streamed {
					smp.OutputTokens = int64(rec.events)
				} else {
					smp.OutputTokens = w.bytes / 4
				}
			}
			smp.Estimated = smp.InputTokens+smp.OutputTokens > 0
		}
	}
	h.usage.Record(h.usage.Handle(&id), &smp)
}

// noteUsage takes the serve's reported usage object (OpenAI or Anthropic
// shape) as the request's token counts.
func (rec *record) noteUsage(u []byte) {
	if len(u) == 0 {
		return
	}
	p, c := backends.ParseUsage(u)
	if p+c == 0 {
		p, c = intOf(u, "input_tokens"), intOf(u, "output_tokens")
		if p+c > 0 {
			p += intOf(u, "cache_read_input_tokens") + intOf(u, "cache_creation_input_tokens")
		}
	}
	if p+c == 0 {
		return
	}
	// A serve's numbers are not trusted blindly: a negative count would
	// give budget back, a huge one overflow the day's sum.
	rec.promptTokens, rec.compTokens = clampTokens(p), clampTokens(c)
	cached, reasoning := backends.ParseUsageDetails(u)
	rec.cachedTokens, rec.reasoningTokens = clampTokens(cached), clampTokens(reasoning)
	rec.usageReported = true
}

// maxTokens bounds one request's reported token count (a trillion).
const maxTokens = 1 << 40

func clampTokens(n int) int { return min(max(n, 0), maxTokens) }

func intOf(obj []byte, key string) int {
	s, e, ok := jsonobj.Find(obj, key)
	if !ok {
		return 0
	}
	n, _ := strconv.Atoi(string(obj[s:e]))
	return n
}
