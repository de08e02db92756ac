package policy_test

import (
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

func TestToken(t *testing.T) {
	const secret = "s3cret-token"
	on := policy.NewToken(secret)
	tests := []struct {
		name          string
		tok           policy.Token
		authorization string
		xAPIKey       string
		want          bool
	}{
		{"auth off allows anything", policy.NewToken(""), "", "", true},
		{"missing", on, "", "", false},
		{"bearer", on, "Bearer " + secret, "", true},
		{"bearer, any case, padded", on, "  bEaReR   " + secret + " ", "", true},
		{"bearer wrong", on, "Bearer " + secret + "x", "", false},
		{"bearer prefix of the secret", on, "Bearer s3cret", "", false},
		{"bearer empty", on, "Bearer ", "", false},
		{"x-api-key", on, "", secret, true},
		{"x-api-key padded", on, "", " " + secret + " ", true},
		{"x-api-key wrong", on, "", "nope", false},
		{"basic scheme", on, "Basic " + secret, "", false},
		{"scheme without value", on, "Bearer", "", false},
		{"other scheme voids a valid x-api-key", on, "Token abc", secret, false},
		{"valid bearer with a wrong x-api-key", on, "Bearer " + secret, "nope", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.tok.Allows(tc.authorization, tc.xAPIKey); got != tc.want {
				t.Errorf("Allows(%q, %q) = %v, want %v", tc.authorization, tc.xAPIKey, got, tc.want)
			}
		})
	}
	if !on.Enabled() || policy.NewToken("").Enabled() {
		t.Error("Enabled is wrong")
	}
}

func BenchmarkTokenAllows(b *testing.B) {
	tok := policy.NewToken("s3cret-token")
	b.ReportAllocs()
	for b.Loop() {
		tok.Allows("Bearer s3cret-token", "")
	}
}
