package policy_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

func TestParseKeyMode(t *testing.T) {
	for in, want := range map[string]policy.KeyMode{"": policy.KeyModePermissive, "permissive": policy.KeyModePermissive, "blocking": policy.KeyModeBlocking} {
		if got, err := policy.ParseKeyMode(in); err != nil || got != want {
			t.Errorf("ParseKeyMode(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"Blocking", "strict", "off"} {
		if _, err := policy.ParseKeyMode(in); err == nil {
			t.Errorf("ParseKeyMode(%q) accepted", in)
		}
	}
}

// TestZeroPathClassFailsClosed: a route without a class (the route table
// in tsrouter gives every route one; TestRouteClasses there) is treated
// as the strictest: blocking mode wants a key, with scope write.
func TestZeroPathClassFailsClosed(t *testing.T) {
	var zero policy.PathClass
	if zero != policy.PathOther || !zero.Blocking() || zero.Scope() != policy.ScopeWrite {
		t.Error("the zero PathClass must fail closed")
	}
}

func TestSplitCredentials(t *testing.T) {
	const tok = "router-token-0123456789"
	on, off := policy.NewToken(tok), policy.NewToken("")
	tests := []struct {
		name          string
		tok           policy.Token
		authorization string
		xAPIKey       string
		want          policy.Credentials
	}{
		{"no token, nothing", off, "", "", policy.Credentials{TokenOK: true}},
		{"no token, bearer key", off, "Bearer " + secretA, "", policy.Credentials{TokenOK: true, Key: secretA}},
		{"no token, x-api-key", off, "", " " + secretA + " ", policy.Credentials{TokenOK: true, Key: secretA}},
		{"no token, both: bearer first, x-api-key as fallback", off, "bearer " + secretA, secretB,
			policy.Credentials{TokenOK: true, Key: secretA, AltKey: secretB}},
		{"no token, both the same", off, "Bearer " + secretA, secretA, policy.Credentials{TokenOK: true, Key: secretA}},
		{"no token, other scheme voids both", off, "Basic " + secretA, secretB, policy.Credentials{TokenOK: true}},
		{"no token, empty bearer voids both", off, "Bearer ", secretB, policy.Credentials{TokenOK: true}},
		{"token only, bearer", on, "Bearer " + tok, "", policy.Credentials{TokenOK: true}},
		{"token only, x-api-key", on, "", tok, policy.Credentials{TokenOK: true}},
		{"token in both", on, "Bearer " + tok, tok, policy.Credentials{TokenOK: true}},
		{"token bearer, key x-api-key", on, "Bearer " + tok, secretA, policy.Credentials{TokenOK: true, Key: secretA}},
		{"key bearer, token x-api-key", on, "Bearer " + secretA, tok, policy.Credentials{TokenOK: true, Key: secretA}},
		{"key alone does not pass the token", on, "Bearer " + secretA, "", policy.Credentials{}},
		{"two keys, no token", on, "Bearer " + secretA, secretB, policy.Credentials{}},
		{"token with other scheme", on, "Token " + tok, tok, policy.Credentials{}},
		{"nothing", on, "", "", policy.Credentials{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.SplitCredentials(tc.tok, tc.authorization, tc.xAPIKey); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Keys of the matrix and combination tests.
const (
	secFull     = "sk-test-full-0123456789abcdef0001"
	secReadOnly = "sk-test-read-0123456789abcdef0002"
	secOff      = "sk-test-off--0123456789abcdef0003"
	secExpired  = "sk-test-old--0123456789abcdef0004"
	secTierA    = "sk-test-tier-0123456789abcdef0005"
	secNowhere  = "sk-test-none-0123456789abcdef0006"
	secUnknown  = "sk-test-who--0123456789abcdef0007"
)

func testKeys(t *testing.T) *policy.KeySet {
	all := []policy.Scope{policy.ScopeRead, policy.ScopeWrite, policy.ScopeFiles, policy.ScopeAdmin}
	return mustSet(t,
		mkKey("full", secFull, func(k *policy.APIKey) { k.Scopes = all; k.RateLimit = 600 }),
		mkKey("read-only", secReadOnly, func(k *policy.APIKey) { k.Scopes = []policy.Scope{policy.ScopeRead} }),
		mkKey("off", secOff, func(k *policy.APIKey) { k.Scopes = all; k.Enabled = false }),
		mkKey("expired", secExpired, func(k *policy.APIKey) { k.Scopes = all; k.ExpiresAt = t0 }),
		mkKey("tier-a", secTierA, func(k *policy.APIKey) { k.AllowedBackends = []string{"qwen-a"} }),
		mkKey("nowhere", secNowhere, func(k *policy.APIKey) { k.AllowedBackends = []string{"renamed-tier"} }),
	)
}

// tierOf is the test router: aliases llm.a and chat on tier qwen-a,
// llm.b on qwen-b.
func tierOf(alias string) string {
	return map[string]string{"llm.a": "qwen-a", "chat": "qwen-a", "llm.b": "qwen-b"}[alias]
}

// The mode × key state × path class matrix. Outcomes: "anon" (the tailnet
// principal unchanged), "key" (bounded by the key), "401", "403".
func TestAdmitMatrix(t *testing.T) {
	keys := testKeys(t)
	states := []struct{ name, secret string }{
		{"none", ""}, {"unknown", secUnknown}, {"valid", secFull}, {"read-only", secReadOnly},
		{"disabled", secOff}, {"expired", secExpired},
	}
	classes := []policy.PathClass{policy.PathInference, policy.PathModels, policy.PathMetadata,
		policy.PathMetrics, policy.PathFiles, policy.PathAdmin, policy.PathOther, policy.PathOpen}
	// want[state][class] = "permissive/blocking"
	want := map[string][]string{
		//           inference    models       metadata     metrics      files        admin        other        open
		"none":      {"anon/401", "anon/401", "anon/anon", "anon/anon", "anon/anon", "anon/anon", "anon/401", "anon/anon"},
		"unknown":   {"anon/401", "anon/401", "anon/anon", "anon/anon", "anon/anon", "anon/anon", "anon/401", "anon/anon"},
		"valid":     {"key/key", "key/key", "key/key", "key/key", "key/key", "key/key", "key/key", "anon/anon"},
		"read-only": {"403/403", "key/key", "key/key", "key/key", "403/403", "403/403", "403/403", "anon/anon"},
		"disabled":  {"401/401", "401/401", "401/401", "401/401", "401/401", "401/401", "401/401", "anon/anon"},
		"expired":   {"401/401", "401/401", "401/401", "401/401", "401/401", "401/401", "401/401", "anon/anon"},
	}
	base, err := policy.Authorize(policy.TailnetRules{}, &policy.Identity{Node: "mini", User: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range states {
		for ci, class := range classes {
			modes := strings.Split(want[st.name][ci], "/")
			for mi, mode := range []policy.KeyMode{policy.KeyModePermissive, policy.KeyModeBlocking} {
				t.Run(st.name+"/"+class.String()+"/"+string(mode), func(t *testing.T) {
					creds := policy.SplitCredentials(policy.Token{}, "", st.secret)
					p, err := policy.Admit(base, policy.KeyRequest{Mode: mode, Class: class, Keys: keys, Creds: creds, Now: t0, TierOf: tierOf})
					got := outcome(base, p, err)
					if got != modes[mi] {
						t.Fatalf("got %s (%v), want %s", got, err, modes[mi])
					}
					if err != nil {
						noSecret(t, err.Error(), st.secret)
					}
				})
			}
		}
	}
}

func outcome(base, p *policy.Principal, err error) string {
	switch {
	case err != nil && policy.Unauthenticated(err):
		return "401"
	case err != nil:
		return "403"
	case p == base:
		return "anon"
	case p.Key != nil:
		return "key"
	}
	return "changed without a key"
}

func TestAdmitDetails(t *testing.T) {
	keys := testKeys(t)
	base := policy.Unrestricted()
	req := func(mode policy.KeyMode, creds policy.Credentials) policy.KeyRequest {
		return policy.KeyRequest{Mode: mode, Class: policy.PathInference, Keys: keys, Creds: creds, Now: t0, TierOf: tierOf}
	}
	tests := []struct {
		name    string
		req     policy.KeyRequest
		wantKey string
		wantErr error
	}{
		{name: "router token missing beats everything", req: req(policy.KeyModePermissive, policy.Credentials{Key: secFull}), wantErr: policy.ErrTokenRequired},
		{name: "token missing on an open path too", req: policy.KeyRequest{Class: policy.PathOpen}, wantErr: policy.ErrTokenRequired},
		{name: "blocking, no key", req: req(policy.KeyModeBlocking, policy.Credentials{TokenOK: true}), wantErr: policy.ErrKeyRequired},
		{name: "an unset mode is blocking", req: req("", policy.Credentials{TokenOK: true}), wantErr: policy.ErrKeyRequired},
		{name: "no key set, blocking", req: policy.KeyRequest{Mode: policy.KeyModeBlocking, Class: policy.PathModels, Creds: policy.Credentials{TokenOK: true, Key: secFull}}, wantErr: policy.ErrKeyUnknown},
		{name: "x-api-key fallback after an unknown bearer", req: req(policy.KeyModeBlocking, policy.Credentials{TokenOK: true, Key: secUnknown, AltKey: secFull}), wantKey: "full"},
		{name: "bearer wins over x-api-key", req: req(policy.KeyModeBlocking, policy.Credentials{TokenOK: true, Key: secTierA, AltKey: secFull}), wantKey: "tier-a"},
		{name: "no fallback after a disabled bearer", req: req(policy.KeyModePermissive, policy.Credentials{TokenOK: true, Key: secOff, AltKey: secFull}), wantErr: policy.ErrKeyDisabled},
		{name: "unknown bearer and unknown x-api-key, blocking", req: req(policy.KeyModeBlocking, policy.Credentials{TokenOK: true, Key: secUnknown, AltKey: "sk-other-0123456789abcdef"}), wantErr: policy.ErrKeyUnknown},
		{name: "scope error names key and scope", req: req(policy.KeyModeBlocking, policy.Credentials{TokenOK: true, Key: secReadOnly}), wantErr: policy.ErrKeyScope},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Admit(base, tc.req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || p != nil {
					t.Fatalf("got %v, %v; want %v", p, err, tc.wantErr)
				}
				if errors.Is(err, policy.ErrKeyScope) && err.Error() != "api key lacks the scope: read-only (needs write)" {
					t.Errorf("message %q", err)
				}
				noSecret(t, err.Error(), tc.req.Creds.Key, tc.req.Creds.AltKey)
				return
			}
			if err != nil || p.Key == nil || p.Key.ID != tc.wantKey {
				t.Fatalf("got %v, %v; want key %s", p, err, tc.wantKey)
			}
		})
	}
	if _, err := policy.Admit(nil, req(policy.KeyModePermissive, policy.Credentials{TokenOK: true})); err == nil {
		t.Error("nil principal admitted")
	}
}

// How keys combine with tailnet grants: the grant bounds every key used
// from the node; a key narrows further; admin needs both.
func TestKeysAndGrants(t *testing.T) {
	keys := testKeys(t)
	node := func(grants ...string) *policy.Principal {
		p, err := policy.Authorize(policy.TailnetRules{}, &policy.Identity{Node: "mini", Grants: raw(grants...)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name      string
		p         *policy.Principal
		secret    string
		tierOf    func(string) string
		may       []string
		mayNot    []string
		allModels bool
		admin     bool
	}{
		{name: "no grant, unrestricted key: everything", p: node(), secret: secFull, tierOf: tierOf,
			may: []string{"llm.a", "llm.b", "chat", "unlisted"}, allModels: true, admin: true},
		{name: "no grant, restricted key: its tier's aliases only", p: node(), secret: secTierA, tierOf: tierOf,
			may: []string{"llm.a", "chat"}, mayNot: []string{"llm.b", "unlisted"}},
		{name: "grant bounds an unrestricted key", p: node(`{"models":["llm.*"]}`), secret: secFull, tierOf: tierOf,
			may: []string{"llm.a", "llm.b"}, mayNot: []string{"chat"}},
		{name: "grant and key intersect", p: node(`{"models":["llm.*"]}`), secret: secTierA, tierOf: tierOf,
			may: []string{"llm.a"}, mayNot: []string{"llm.b", "chat"}},
		{name: "key of a renamed tier reaches nothing", p: node(), secret: secNowhere, tierOf: tierOf,
			mayNot: []string{"llm.a", "llm.b", "chat"}},
		{name: "restricted key without a tier map reaches nothing", p: node(), secret: secTierA, tierOf: nil,
			mayNot: []string{"llm.a", "chat"}},
		{name: "grant without models, any key: nothing", p: node(`{"admin":true}`), secret: secFull, tierOf: tierOf,
			mayNot: []string{"llm.a"}, admin: true},
		{name: "admin grant, key without admin: not admin", p: node(`{"models":["*"],"admin":true}`), secret: secTierA, tierOf: tierOf,
			may: []string{"chat"}},
		{name: "non-admin grant, admin key: not admin", p: node(`{"models":["*"]}`), secret: secFull, tierOf: tierOf,
			may: []string{"chat"}},
		{name: "listener without identity, admin key: admin", p: policy.Unrestricted(), secret: secFull, tierOf: tierOf,
			may: []string{"chat"}, allModels: true, admin: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := *tc.p
			k, err := keys.Authenticate(tc.secret, t0)
			if err != nil {
				t.Fatal(err)
			}
			p := policy.ApplyKey(tc.p, k, tc.tierOf)
			for _, m := range tc.may {
				if !p.MayUseModel(m) {
					t.Errorf("may not use %q", m)
				}
			}
			for _, m := range tc.mayNot {
				if p.MayUseModel(m) {
					t.Errorf("may use %q", m)
				}
			}
			if p.AllModels != tc.allModels || p.Admin != tc.admin || p.Key != k {
				t.Errorf("AllModels=%v Admin=%v Key=%v; want %v %v", p.AllModels, p.Admin, p.Key, tc.allModels, tc.admin)
			}
			if tc.p.Key != nil || tc.p.AllModels != before.AllModels || tc.p.Admin != before.Admin {
				t.Error("ApplyKey modified the tailnet principal")
			}
		})
	}
	if p := node(`{"models":["chat"],"admin":true}`); policy.ApplyKey(p, nil, tierOf) != p {
		t.Error("ApplyKey without a key must return the principal itself")
	}
}

func TestLimits(t *testing.T) {
	keys := testKeys(t)
	full, _ := keys.Get("full")
	tierA, _ := keys.Get("tier-a")
	withRPM := func(rpm string) *policy.Principal {
		p, err := policy.Authorize(policy.TailnetRules{}, &policy.Identity{Node: "mini", Grants: raw(`{"models":["*"],"rpm":` + rpm + `}`)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ipOnly := &policy.Principal{Identity: &policy.Identity{IP: netip.MustParseAddr("100.64.0.7")}, RPM: 5}
	tests := []struct {
		name string
		p    *policy.Principal
		want [2]policy.Limit
	}{
		{"no limits", policy.Unrestricted(), [2]policy.Limit{}},
		{"grant rpm", withRPM("60"), [2]policy.Limit{{Bucket: "node:mini", PerMinute: 60}}},
		{"grant rpm and key rate", policy.ApplyKey(withRPM("60"), full, tierOf), [2]policy.Limit{{Bucket: "node:mini", PerMinute: 60}, {Bucket: "key:full", PerMinute: 600}}},
		{"key without rate", policy.ApplyKey(withRPM("0"), tierA, tierOf), [2]policy.Limit{}},
		{"key on a listener without identity", policy.ApplyKey(policy.Unrestricted(), full, tierOf), [2]policy.Limit{{}, {Bucket: "key:full", PerMinute: 600}}},
		{"node without a name", ipOnly, [2]policy.Limit{{Bucket: "node:100.64.0.7", PerMinute: 5}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Limits(); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func BenchmarkAdmit(b *testing.B) {
	s, secrets := benchSet(b)
	p := policy.Unrestricted()
	req := policy.KeyRequest{Mode: policy.KeyModeBlocking, Class: policy.PathInference, Keys: s,
		Creds: policy.SplitCredentials(policy.Token{}, "Bearer "+secrets[7], ""), Now: t0, TierOf: tierOf}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Admit(p, req); err != nil {
			b.Fatal(err)
		}
	}
}
