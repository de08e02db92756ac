package policy_test

import (
	"slices"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

// Grants and keys add guardrail providers by name: the union of the
// grants', then the key's.
func TestGuardrailNames(t *testing.T) {
	id := &policy.Identity{Node: "laptop", User: "alice@example.com", Grants: raw(
		`{"models":["chat"],"guardrails":["strict-pii"]}`,
		`{"models":["llm.*"],"guardrails":["strict-pii","house-rules"]}`,
	)}
	p, err := policy.Authorize(policy.TailnetRules{}, id)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.GuardrailNames(); !slices.Equal(got, []string{"strict-pii", "house-rules"}) {
		t.Errorf("grants: %v", got)
	}
	p.Key = &policy.APIKey{ID: "k", Guardrails: []string{"webhook-audit"}}
	if got := p.GuardrailNames(); !slices.Equal(got, []string{"strict-pii", "house-rules", "webhook-audit"}) {
		t.Errorf("grants and key: %v", got)
	}
	if got := policy.Unrestricted().GuardrailNames(); got != nil {
		t.Errorf("no grant, no key: %v", got)
	}
	if _, err := policy.ParseGrant([]byte(`{"guardrails":"strict-pii"}`)); err == nil {
		t.Error("a guardrails string (not a list) was accepted")
	}
}
