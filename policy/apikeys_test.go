package policy_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mkKey builds a valid key with secret; mods adjust it.
func mkKey(id, secret string, mods ...func(*policy.APIKey)) policy.APIKey {
	k := policy.APIKey{
		ID: id, UserID: "user-" + id, OrganizationID: "org-main",
		Scopes:  []policy.Scope{policy.ScopeRead, policy.ScopeWrite},
		Enabled: true, Source: policy.SourceConfig,
	}
	k.SetSecret(secret)
	for _, m := range mods {
		m(&k)
	}
	return k
}

func mustSet(t testing.TB, keys ...policy.APIKey) *policy.KeySet {
	t.Helper()
	s, _, err := policy.NewKeySet(keys, []string{"qwen-a", "qwen-b"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noSecret fails if any secret appears in s.
func noSecret(t *testing.T, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%q reveals a secret", s)
		}
	}
}

const (
	secretA = "sk-test-alpha-0123456789abcdefWXYZ"
	secretB = "sk-test-bravo-0123456789abcdefQRST"
)

func TestParseScopes(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    []policy.Scope
		wantErr string
	}{
		{name: "all four", in: []string{"read", "write", "files", "admin"}, want: []policy.Scope{"read", "write", "files", "admin"}},
		{name: "case and space", in: []string{" Read ", "WRITE"}, want: []policy.Scope{"read", "write"}},
		{name: "duplicates dropped", in: []string{"read", "read"}, want: []policy.Scope{"read"}},
		{name: "empty is an error", in: nil, wantErr: "at least one"},
		{name: "unknown scope", in: []string{"read", "owner"}, wantErr: `unknown scope "owner"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ParseScopes(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestNewKeySet(t *testing.T) {
	many := make([]policy.APIKey, policy.MaxKeys+1)
	for i := range many {
		many[i] = mkKey(fmt.Sprintf("k%d", i), fmt.Sprintf("sk-many-%032d", i))
	}
	tests := []struct {
		name     string
		keys     []policy.APIKey
		wantErr  []string // substrings; nil = valid
		warnings []string // substrings, in order
	}{
		{name: "two valid keys", keys: []policy.APIKey{mkKey("a", secretA), mkKey("b", secretB)}},
		{name: "no keys", keys: nil},
		{name: "exactly the maximum", keys: many[:policy.MaxKeys]},
		{name: "over the maximum", keys: many, wantErr: []string{"10001 api keys; at most 10000"}},
		{name: "duplicate id", keys: []policy.APIKey{mkKey("a", secretA), mkKey("a", secretB)}, wantErr: []string{`"a" (#2): duplicate id`}},
		{name: "same secret twice", keys: []policy.APIKey{mkKey("a", secretA), mkKey("b", secretA)},
			wantErr: []string{`"b" (#2): has the same key value as "a"`}},
		{name: "required fields, all reported", keys: []policy.APIKey{mkKey("", secretA, func(k *policy.APIKey) {
			k.UserID, k.OrganizationID, k.Scopes = "", "", nil
		})}, wantErr: []string{"api key #1: id is required", "user_id is required", "organization_id is required", "scopes"}},
		{name: "no digest", keys: []policy.APIKey{{ID: "a", UserID: "u", OrganizationID: "o", Scopes: []policy.Scope{"read"}}},
			wantErr: []string{"no key value"}},
		{name: "unknown scope", keys: []policy.APIKey{mkKey("a", secretA, func(k *policy.APIKey) { k.Scopes = []policy.Scope{"Read"} })},
			wantErr: []string{`unknown scope "Read"`}},
		{name: "negative rate limit", keys: []policy.APIKey{mkKey("a", secretA, func(k *policy.APIKey) { k.RateLimit = -1 })},
			wantErr: []string{"rate_limit must be >= 0"}},
		{name: "unknown backend is a warning", keys: []policy.APIKey{mkKey("a", secretA, func(k *policy.APIKey) {
			k.AllowedBackends = []string{"qwen-a", "Qwen-B", "gone"}
		})}, warnings: []string{`"a" (#1): allowed_backends names unknown tier "Qwen-B"`, `unknown tier "gone"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, warnings, err := policy.NewKeySet(tc.keys, []string{"qwen-a", "qwen-b"})
			if len(warnings) != len(tc.warnings) {
				t.Errorf("warnings %q, want %d", warnings, len(tc.warnings))
			}
			for i, w := range tc.warnings {
				if i < len(warnings) && !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q, want %q", warnings[i], w)
				}
			}
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if s.Len() != len(tc.keys) {
					t.Errorf("Len %d, want %d", s.Len(), len(tc.keys))
				}
				return
			}
			if err == nil || s != nil {
				t.Fatalf("got a set, want errors %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want %q", err, w)
				}
			}
			noSecret(t, err.Error(), secretA, secretB)
		})
	}
}

func TestKeySetIsACopy(t *testing.T) {
	keys := []policy.APIKey{mkKey("a", secretA, func(k *policy.APIKey) { k.AllowedBackends = []string{"qwen-a"} })}
	s := mustSet(t, keys...)
	keys[0].Enabled = false
	keys[0].AllowedBackends[0] = "qwen-b"
	k, err := s.Authenticate(secretA, t0)
	if err != nil || !k.MayUseTier("qwen-a") || k.MayUseTier("qwen-b") {
		t.Fatalf("set changed with its input: %v %v", k, err)
	}
	if got, ok := s.Get("a"); !ok || got != k {
		t.Errorf("Get: %v %v", got, ok)
	}
	if _, ok := s.Get("nope"); ok {
		t.Error("Get of an unknown id")
	}
	var nilSet *policy.KeySet
	if nilSet.Len() != 0 || nilSet.Keys() != nil {
		t.Error("nil set is not empty")
	}
	if _, ok := nilSet.Get("a"); ok {
		t.Error("nil set has a key")
	}
}

func TestAuthenticate(t *testing.T) {
	exp := t0.Add(time.Hour)
	s := mustSet(t,
		mkKey("live", secretA),
		mkKey("off", secretB, func(k *policy.APIKey) { k.Enabled = false }),
		mkKey("dated", "sk-test-dated-0123456789abcdef9999", func(k *policy.APIKey) { k.ExpiresAt = exp }),
	)
	tests := []struct {
		name    string
		secret  string
		now     time.Time
		wantID  string
		wantErr error
	}{
		{name: "valid", secret: secretA, now: t0, wantID: "live"},
		{name: "empty", secret: "", now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "unknown", secret: "sk-nobody-0123456789abcdef", now: t0, wantErr: policy.ErrKeyUnknown},
		// The whole value is hashed: sharing a prefix or a suffix with a
		// real key buys nothing, and nothing returns early on a prefix.
		{name: "prefix of a key", secret: secretA[:len(secretA)-1], now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "key plus a suffix", secret: secretA + "x", now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "last character differs", secret: secretA[:len(secretA)-1] + "Y", now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "first character differs", secret: "S" + secretA[1:], now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "case differs", secret: strings.ToUpper(secretA), now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "padded (callers trim)", secret: " " + secretA, now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "oversized", secret: secretA + strings.Repeat("x", policy.MaxSecretLen), now: t0, wantErr: policy.ErrKeyUnknown},
		{name: "disabled", secret: secretB, now: t0, wantErr: policy.ErrKeyDisabled, wantID: "off"},
		{name: "before expiry", secret: "sk-test-dated-0123456789abcdef9999", now: exp.Add(-time.Nanosecond), wantID: "dated"},
		{name: "at expiry", secret: "sk-test-dated-0123456789abcdef9999", now: exp, wantErr: policy.ErrKeyExpired, wantID: "dated"},
		{name: "after expiry", secret: "sk-test-dated-0123456789abcdef9999", now: exp.Add(time.Hour), wantErr: policy.ErrKeyExpired, wantID: "dated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := s.Authenticate(tc.secret, tc.now)
			if tc.wantErr == nil {
				if err != nil || k == nil || k.ID != tc.wantID {
					t.Fatalf("got %v, %v; want key %s", k, err, tc.wantID)
				}
				return
			}
			if k != nil || !errors.Is(err, tc.wantErr) {
				t.Fatalf("got %v, %v; want %v", k, err, tc.wantErr)
			}
			var ke *policy.KeyError
			if tc.wantID != "" && (!errors.As(err, &ke) || ke.ID != tc.wantID) {
				t.Errorf("error %v does not name key %s", err, tc.wantID)
			}
			noSecret(t, err.Error(), tc.secret, secretA, secretB)
		})
	}
	var nilSet *policy.KeySet
	if _, err := nilSet.Authenticate(secretA, t0); err != policy.ErrKeyUnknown {
		t.Errorf("nil set: %v", err)
	}
}

func TestAllowedBackends(t *testing.T) {
	tests := []struct {
		name     string
		allowed  []string
		restrict bool
		may      []string
		mayNot   []string
	}{
		// Seed: "Empty / absent ⇒ unrestricted".
		{name: "absent (nil): unrestricted", allowed: nil, may: []string{"qwen-a", "qwen-b", "anything"}},
		{name: "empty: unrestricted", allowed: []string{}, may: []string{"qwen-a", "qwen-b"}},
		{name: "non-empty: allow-list", allowed: []string{"qwen-a"}, restrict: true, may: []string{"qwen-a"}, mayNot: []string{"qwen-b", ""}},
		{name: "exact and case-sensitive", allowed: []string{"qwen-a"}, restrict: true, mayNot: []string{"Qwen-A", "qwen-a ", "qwen"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := mkKey("a", secretA, func(k *policy.APIKey) { k.AllowedBackends = tc.allowed })
			s := mustSet(t, raw)
			k, _ := s.Get("a")
			for _, key := range []*policy.APIKey{&raw, k} { // as built, and as held by a set
				if key.Restricted() != tc.restrict {
					t.Errorf("Restricted = %v", key.Restricted())
				}
				for _, tier := range tc.may {
					if !key.MayUseTier(tier) {
						t.Errorf("may not use %q", tier)
					}
				}
				for _, tier := range tc.mayNot {
					if key.MayUseTier(tier) {
						t.Errorf("may use %q", tier)
					}
				}
			}
		})
	}
}

func TestKeyUpdate(t *testing.T) {
	base := mkKey("a", secretA, func(k *policy.APIKey) {
		k.AllowedBackends = []string{"qwen-a"}
		k.RateLimit = 60
		k.Name = "old"
	})
	list := func(s ...string) *[]string { return &s }
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		u       policy.KeyUpdate
		backs   []string // want AllowedBackends
		check   func(policy.APIKey) string
		wantErr string
	}{
		{name: "null leaves allowed_backends unchanged", u: policy.KeyUpdate{Name: str("new")}, backs: []string{"qwen-a"},
			check: func(k policy.APIKey) string {
				if k.Name != "new" || k.RateLimit != 60 || k.Digest != base.Digest {
					return fmt.Sprint(k)
				}
				return ""
			}},
		{name: "empty array clears every restriction", u: policy.KeyUpdate{AllowedBackends: list()}, backs: nil},
		{name: "non-empty array replaces", u: policy.KeyUpdate{AllowedBackends: list("qwen-b", "qwen-c")}, backs: []string{"qwen-b", "qwen-c"}},
		{name: "scopes replaced", u: policy.KeyUpdate{Scopes: list("admin")}, backs: []string{"qwen-a"},
			check: func(k policy.APIKey) string {
				if !k.HasScope(policy.ScopeAdmin) || k.HasScope(policy.ScopeRead) {
					return fmt.Sprint(k.Scopes)
				}
				return ""
			}},
		{name: "expiry removed with the zero time", u: policy.KeyUpdate{ExpiresAt: &time.Time{}}, backs: []string{"qwen-a"}},
		{name: "bad scope", u: policy.KeyUpdate{Scopes: list("root")}, wantErr: "unknown scope"},
		{name: "no scopes", u: policy.KeyUpdate{Scopes: list()}, wantErr: "at least one"},
		{name: "negative rate", u: policy.KeyUpdate{RateLimit: new(-5)}, wantErr: "rate_limit"},
		{name: "empty backend name", u: policy.KeyUpdate{AllowedBackends: list("")}, wantErr: "empty name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.u.Apply(base)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.AllowedBackends) != fmt.Sprint(tc.backs) || (tc.backs == nil) != (got.AllowedBackends == nil) {
				t.Errorf("allowed_backends %#v, want %#v", got.AllowedBackends, tc.backs)
			}
			if tc.check != nil {
				if msg := tc.check(got); msg != "" {
					t.Error(msg)
				}
			}
			if base.Name != "old" || len(base.AllowedBackends) != 1 || base.AllowedBackends[0] != "qwen-a" {
				t.Errorf("Apply modified its input: %+v", base)
			}
			if _, _, err := policy.NewKeySet([]policy.APIKey{got}, nil); err != nil {
				t.Errorf("updated key is invalid: %v", err)
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		name, secret, want string
	}{
		{"generated key", "sk-anvil-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAabcd", "sk-***abcd"},
		{"twenty characters", "01234567890123456789", "sk-***6789"},
		{"too short to show anything", "0123456789012345678", "sk-***"},
		{"empty", "", "sk-***"},
		{"non-ASCII tail", "0123456789012345678\u00e9\u00e9", "sk-***"},
		{"control character in the tail", "0123456789012345678\n123", "sk-***"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := policy.Mask(tc.secret); got != tc.want {
				t.Errorf("Mask = %q, want %q", got, tc.want)
			}
			k := mkKey("a", tc.secret)
			if k.Masked() != tc.want {
				t.Errorf("Masked = %q, want %q", k.Masked(), tc.want)
			}
		})
	}
	// Property: never more than the last four characters.
	for range 200 {
		s, err := policy.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		m := policy.Mask(s)
		if shown := strings.TrimPrefix(m, "sk-***"); shown != s[len(s)-4:] || strings.Contains(m, s[:len(s)-4]) {
			t.Fatalf("Mask(%q) = %q", s, m)
		}
	}
}

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		s, err := policy.NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(s, policy.SecretPrefix)
		if !ok || len(body) != 43 || strings.Trim(body, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			t.Fatalf("bad secret shape %q", s)
		}
		if seen[s] {
			t.Fatal("repeated secret")
		}
		seen[s] = true
		if len(s) < policy.MinSecretLen || len(s) > policy.MaxSecretLen {
			t.Fatalf("generated secret outside the accepted lengths: %d", len(s))
		}
	}
}

func TestKeyNeverPrintsItsDigest(t *testing.T) {
	k := mkKey("key-prod-1", secretA)
	sum := sha256.Sum256([]byte(secretA))
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("auth", "key", k, "ptr", &k)
	for _, out := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %s", &k, k, k), buf.String()} {
		if !strings.Contains(out, "key-prod-1") || !strings.Contains(out, "sk-***WXYZ") {
			t.Errorf("%q lacks id or mask", out)
		}
		noSecret(t, out, secretA, hex.EncodeToString(sum[:]), fmt.Sprint(sum[:4]), secretA[:len(secretA)-4])
	}
	var r policy.KeyRecord
	r.Key, r.ID = secretA, "key-prod-1"
	noSecret(t, fmt.Sprint(r)+fmt.Sprintf("%+v", r), secretA)
}

func benchSet(b *testing.B) (*policy.KeySet, []string) {
	keys := make([]policy.APIKey, policy.MaxKeys)
	secrets := make([]string, len(keys))
	for i := range keys {
		secrets[i], _ = policy.NewSecret()
		keys[i] = mkKey(fmt.Sprintf("k%d", i), secrets[i])
	}
	s, _, err := policy.NewKeySet(keys, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s, secrets
}

func BenchmarkAuthenticate(b *testing.B) {
	s, secrets := benchSet(b)
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Authenticate(secrets[4242], t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		miss := secrets[4242][:len(secrets[4242])-1] + "!"
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Authenticate(miss, t0); err == nil {
				b.Fatal("authenticated")
			}
		}
	})
}
