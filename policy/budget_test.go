package policy_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

// TestGrantBudgets: tokens_per_day, requests_per_day and budget are read
// strictly from grants; the most generous grant wins (0: none), the
// first budget name is kept, and a negative limit or a typo denies.
func TestGrantBudgets(t *testing.T) {
	cases := []struct {
		name           string
		grants         []string
		tokens, reqs   int64
		budget, denied string
	}{
		{name: "one grant", grants: []string{`{"models":["*"],"tokens_per_day":1000,"requests_per_day":10,"budget":"team"}`}, tokens: 1000, reqs: 10, budget: "team"},
		{name: "most generous wins", grants: []string{`{"models":["a"],"tokens_per_day":1000}`, `{"models":["b"],"tokens_per_day":5000}`}, tokens: 5000},
		{name: "no limit wins", grants: []string{`{"models":["a"],"requests_per_day":3}`, `{"models":["b"]}`}},
		{name: "negative", grants: []string{`{"models":["*"],"tokens_per_day":-1}`}, denied: "grant 0: tokens_per_day and requests_per_day must be >= 0"},
		{name: "typo", grants: []string{`{"models":["*"],"token_per_day":10}`}, denied: "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := &policy.Identity{Node: "n", User: "u@example.com"}
			for _, g := range tc.grants {
				id.Grants = append(id.Grants, json.RawMessage(g))
			}
			p, err := policy.Authorize(policy.TailnetRules{}, id)
			if tc.denied != "" {
				if err == nil || !strings.Contains(err.Error(), tc.denied) {
					t.Fatalf("err = %v, want %q", err, tc.denied)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.TokensPerDay != tc.tokens || p.RequestsPerDay != tc.reqs || p.Budget != tc.budget {
				t.Fatalf("principal budget %d/%d %q, want %d/%d %q", p.TokensPerDay, p.RequestsPerDay, p.Budget, tc.tokens, tc.reqs, tc.budget)
			}
		})
	}
}
