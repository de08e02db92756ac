package usage

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Limits are a day budget: 0 means no limit of that kind.
type Limits struct {
	TokensPerDay, RequestsPerDay int64
}

// Any reports whether l limits anything.
func (l Limits) Any() bool { return l.TokensPerDay > 0 || l.RequestsPerDay > 0 }

// BudgetUse is what a budget has spent in its current UTC day.
type BudgetUse struct {
	Tokens, Requests int64
}

// budgets are the day spends of named budgets (identities and shared
// buckets named by grants and keys: bounded by the operator's config).
type budgets struct {
	mu  sync.Mutex
	use map[string]*budgetDay
}

type budgetDay struct {
	day              int64
	tokens, requests int64
	// limits are the limits last checked against this budget (for views).
	limits Limits
}

func (b *budgets) init() { b.use = map[string]*budgetDay{} }

func (b *budgets) reset() {
	b.mu.Lock()
	clear(b.use)
	b.mu.Unlock()
}

// prune drops the budgets with nothing spent today (their next request
// starts them again).
func (b *budgets) prune(today int64) {
	b.mu.Lock()
	for name, u := range b.use {
		if u.day < today {
			delete(b.use, name)
		}
	}
	b.mu.Unlock()
}

func (b *budgets) spend(name string, unix, tokens int64) {
	d := unix - unix%day
	b.mu.Lock()
	u := b.use[name]
	if u == nil {
		u = &budgetDay{day: d}
		b.use[name] = u
	}
	if u.day < d {
		*u = budgetDay{day: d, limits: u.limits}
	}
	if u.day == d {
		u.tokens += tokens
	}
	b.mu.Unlock()
}

// Budget is what budget name has spent today (UTC).
func (s *Store) Budget(name string) BudgetUse {
	d := StartOfDay(s.now()).Unix()
	s.budgets.mu.Lock()
	defer s.budgets.mu.Unlock()
	if u := s.budgets.use[name]; u != nil && u.day == d {
		return BudgetUse{Tokens: u.tokens, Requests: u.requests}
	}
	return BudgetUse{}
}

// Admit checks budget name against l for one more request today and, if
// it is not past l, counts the request against it at once (so callers in
// flight together cannot all pass the last one); the request's tokens are
// added when it is recorded. resets is the next UTC midnight.
func (s *Store) Admit(name string, l Limits) (over bool, resets time.Time) {
	i, resets := s.AdmitAll([]Want{{name, l}})
	return i >= 0, resets
}

// Want is one budget a request must fit in.
type Want struct {
	Name string
	Limits
}

// AdmitAll admits one request against every budget of ws together: when
// one is past its limits, the index of the first such is returned and no
// budget counts the request; otherwise -1, and each counts it. One lock
// for all, so a request refused by its second budget never spends from
// its first. resets is the next UTC midnight.
func (s *Store) AdmitAll(ws []Want) (over int, resets time.Time) {
	now := s.now()
	resets = StartOfDay(now).Add(24 * time.Hour)
	d := StartOfDay(now).Unix()
	s.budgets.mu.Lock()
	defer s.budgets.mu.Unlock()
	for i, w := range ws {
		if w.Limits.Any() && s.budgetDayLocked(w.Name, w.Limits, d).over(w.Limits, d) {
			return i, resets
		}
	}
	for _, w := range ws {
		if !w.Limits.Any() {
			continue
		}
		if b := s.budgetDayLocked(w.Name, w.Limits, d); b.day == d {
			b.requests++
		}
	}
	return -1, resets
}

// Exceeded reports whether budget name is past l today, and when the
// window resets (the next UTC midnight), without counting a request.
func (s *Store) Exceeded(name string, l Limits) (over bool, resets time.Time) {
	now := s.now()
	resets = StartOfDay(now).Add(24 * time.Hour)
	if !l.Any() {
		return false, resets
	}
	s.budgets.mu.Lock()
	defer s.budgets.mu.Unlock()
	d := StartOfDay(now).Unix()
	return s.budgetDayLocked(name, l, d).over(l, d), resets
}

// budgetDayLocked is budget name's spend on day d (unix seconds of its
// UTC midnight), made or reset as needed; its limits become l.
func (s *Store) budgetDayLocked(name string, l Limits, d int64) *budgetDay {
	b := s.budgets.use[name]
	if b == nil {
		b = &budgetDay{day: d}
		s.budgets.use[name] = b
	}
	b.limits = l
	if b.day < d {
		*b = budgetDay{day: d, limits: l}
	}
	return b
}

// over reports whether day d's spend has reached a limit of l (a spend
// dated after d, from a clock that stepped back, is not d's).
func (b *budgetDay) over(l Limits, d int64) bool {
	if b.day != d {
		return false
	}
	return (l.TokensPerDay > 0 && b.tokens >= l.TokensPerDay) ||
		(l.RequestsPerDay > 0 && b.requests >= l.RequestsPerDay)
}

// BudgetView is a budget's limits and what it spent today.
type BudgetView struct {
	Name string
	Limits
	BudgetUse
}

// Budgets lists the budgets the router has checked or spent from, by
// name, with today's spend.
func (s *Store) Budgets() []BudgetView {
	d := StartOfDay(s.now()).Unix()
	s.budgets.mu.Lock()
	defer s.budgets.mu.Unlock()
	out := make([]BudgetView, 0, len(s.budgets.use))
	for name, u := range s.budgets.use {
		v := BudgetView{Name: name, Limits: u.limits}
		if u.day == d {
			v.BudgetUse = BudgetUse{Tokens: u.tokens, Requests: u.requests}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b BudgetView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Limits returns the limits last checked against budget name.
func (s *Store) Limits(name string) Limits {
	s.budgets.mu.Lock()
	defer s.budgets.mu.Unlock()
	if u := s.budgets.use[name]; u != nil {
		return u.limits
	}
	return Limits{}
}
