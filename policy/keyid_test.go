package policy_test

import (
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

func TestKeyIDs(t *testing.T) {
	for _, tc := range []struct {
		name, id string
		ok       bool
	}{
		{"simple", "ci-bot", true},
		{"dots and underscores", "team.a_bot-2", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"empty", "", false},
		{"65 characters", strings.Repeat("a", 65), false},
		{"5000 characters", strings.Repeat("a", 5000), false},
		{"slash", "a/b", false},
		{"dot-dot", "../../x", false},
		{"newline", "a\nb", false},
		{"bidi override", "a\u202eb", false},
		{"leading dash", "-x", false},
		{"non-ASCII letter", "bötchen", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := policy.CheckKeyID(tc.id)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckKeyID(%q) = %v", tc.id, err)
			}
			if err != nil && (strings.ContainsAny(err.Error(), "\n\u202e") || len(err.Error()) > 200) {
				t.Errorf("error echoes the raw id: %q", err)
			}
			// Every source of keys goes through NewKeySet.
			k := policy.APIKey{ID: tc.id, UserID: "u", OrganizationID: "o", Scopes: []policy.Scope{policy.ScopeRead}, Enabled: true}
			k.SetSecret("sk-test-0123456789abcdef0123456789")
			_, _, err = policy.NewKeySet([]policy.APIKey{k}, nil)
			if (err == nil) != tc.ok {
				t.Errorf("NewKeySet with id %q: %v", tc.id, err)
			}
		})
	}
}
