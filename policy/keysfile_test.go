package policy_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
)

const (
	envPartner = "sk-partner-secret-0123456789abcdefPQRS"
	envPlain   = "sk-plain-secret-in-file-0123456789LMNO"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

var testEnv = env(map[string]string{"PARTNER_KEY": envPartner, "EMPTY": "", "PART": "0123456789abcdef"})

func TestParseKeysFile(t *testing.T) {
	const file = `
# api_keys_file: the seed's fields, in TOML
[[keys]]
key = "${PARTNER_KEY}"
id = "key-partner-1"
user_id = "partner-acme"
organization_id = "org-acme"
name = "Partner"
description = "ACME integration"
scopes = ["read", "write"]
rate_limit = 500
allowed_backends = ["qwen-a", "qwen-b"]
expires_at = "2027-12-31T23:59:59Z"

[[keys]]
key = "` + envPlain + `"
id = "key-external-1"
user_id = "external-user"
organization_id = "external-org"
scopes = ["read", "write", "files", "admin"]
enabled = false
expires_at = 2027-06-30T12:00:00+02:00

[[keys]]
key = "sk-composed-${PART}"
id = "key-composed"
user_id = "u"
organization_id = "o"
scopes = ["read"]
allowed_backends = []
`
	keys, err := policy.ParseKeysFile([]byte(file), testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("%d keys", len(keys))
	}
	p, x, c := keys[0], keys[1], keys[2]
	if p.ID != "key-partner-1" || p.UserID != "partner-acme" || p.OrganizationID != "org-acme" || p.Name != "Partner" ||
		p.Description != "ACME integration" || fmt.Sprint(p.Scopes) != "[read write]" || p.RateLimit != 500 || !p.Enabled ||
		!p.ExpiresAt.Equal(time.Date(2027, 12, 31, 23, 59, 59, 0, time.UTC)) || fmt.Sprint(p.AllowedBackends) != "[qwen-a qwen-b]" ||
		p.Source != policy.SourceFile {
		t.Errorf("partner key: %+v", p)
	}
	if p.Digest != sha256.Sum256([]byte(envPartner)) || p.Masked() != "sk-***PQRS" {
		t.Errorf("partner key digest or mask wrong: %s", p.Masked())
	}
	if x.Enabled || !x.ExpiresAt.Equal(time.Date(2027, 6, 30, 10, 0, 0, 0, time.UTC)) || x.Digest != sha256.Sum256([]byte(envPlain)) {
		t.Errorf("external key: %+v", x)
	}
	if c.Digest != sha256.Sum256([]byte("sk-composed-0123456789abcdef")) || c.Restricted() {
		t.Errorf("composed key: %+v", c)
	}
	// The result is what NewKeySet takes, and the keys then work.
	set, warnings, err := policy.NewKeySet(keys, []string{"qwen-a"})
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], `"qwen-b"`) {
		t.Fatalf("NewKeySet: %v %q", err, warnings)
	}
	if k, err := set.Authenticate(envPartner, t0); err != nil || k.ID != "key-partner-1" {
		t.Errorf("partner key does not authenticate: %v", err)
	}
	if _, err := set.Authenticate(envPlain, t0); !errors.Is(err, policy.ErrKeyDisabled) {
		t.Errorf("disabled key: %v", err)
	}
}

func TestParseKeysFileErrors(t *testing.T) {
	rec := func(lines ...string) string {
		return "[[keys]]\nid = \"k1\"\nuser_id = \"u\"\norganization_id = \"o\"\nscopes = [\"read\"]\n" + strings.Join(lines, "\n") + "\n"
	}
	many := strings.Repeat("[[keys]]\n", policy.MaxKeys+1)
	tests := []struct {
		name string
		file string
		want []string
	}{
		{"missing variable", rec(`key = "${NOPE}"`), []string{`keys[0] (id "k1"): key: variable NOPE is unset or empty`}},
		{"empty variable", rec(`key = "${EMPTY}"`), []string{"variable EMPTY is unset or empty"}},
		{"unterminated reference", rec(`key = "` + envPlain + `${PARTNER_KEY"`), []string{"unterminated ${"}},
		{"malformed reference", rec(`key = "${` + envPlain + `}"`), []string{"malformed ${...} reference"}},
		{"no key", rec(), []string{"key is required"}},
		{"short key", rec(`key = "sk-short"`), []string{"shorter than 16 characters"}},
		{"long key", rec(`key = "` + strings.Repeat("k", policy.MaxSecretLen+1) + `"`), []string{"longer than 512"}},
		{"field given twice", rec(`key = "`+envPlain+`"`, `scopes = ["read", "sudo"]`), []string{"line 7", "already defined"}},
		{"unknown field", rec(`key = "`+envPlain+`"`, `allowed_backend = ["qwen-a"]`), []string{"unknown field(s) keys.allowed_backend (line 7)"}},
		{"YAML-style scopes", rec(`key = "`+envPlain+`"`, `allowed_backends = [qwen-a]`), []string{"line 7", "invalid TOML"}},
		{"wrong type", rec(`key = "`+envPlain+`"`, `rate_limit = "`+envPartner+`"`), []string{"line 7", "keys.rate_limit", "wrong type: got TOML string"}},
		{"secret in a syntax error", rec(`key = "` + envPlain + `\q"`), []string{"line 6", "invalid escape character"}},
		{"secret as a bare value", rec(`key = ` + envPlain), []string{"line 6", "unexpected character"}},
		{"unterminated string", rec(`key = "` + envPlain), []string{"line 6"}},
		{"local expiry", rec(`key = "`+envPlain+`"`, `expires_at = 2027-12-31T23:59:59`), []string{"add a time zone offset"}},
		{"date expiry", rec(`key = "`+envPlain+`"`, `expires_at = 2027-12-31`), []string{"add a time zone offset"}},
		{"bad expiry string", rec(`key = "`+envPlain+`"`, `expires_at = "`+envPartner+`"`), []string{"want an RFC 3339 time"}},
		{"numeric expiry", rec(`key = "`+envPlain+`"`, `expires_at = 1767225599`), []string{"want a date-time, got integer"}},
		{"too many keys", many, []string{"10001 keys; at most 10000"}},
		{"every record reported", rec(`key = "${NOPE}"`) + "[[keys]]\nid = \"k2\"\nkey = \"x\"\nscopes = [\"read\"]\n",
			[]string{`keys[0] (id "k1")`, `keys[1] (id "k2"): key is shorter`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := policy.ParseKeysFile([]byte(tc.file), testEnv)
			if err == nil {
				t.Fatalf("parsed %d keys, want an error", len(keys))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want %q", err, w)
				}
			}
			noSecret(t, err.Error(), envPlain, envPartner, envPlain[:12], envPartner[:12])
		})
	}
	for _, empty := range []string{"", "# no keys yet\n"} {
		if keys, err := policy.ParseKeysFile([]byte(empty), testEnv); err != nil || len(keys) != 0 {
			t.Errorf("empty file %q: %v %v", empty, keys, err)
		}
	}
	// A scope typo inside a well-formed record is a record error.
	_, err := policy.ParseKeysFile([]byte("[[keys]]\nid = \"k1\"\nuser_id = \"u\"\norganization_id = \"o\"\nkey = \""+envPlain+"\"\nscopes = [\"read\", \"sudo\"]\n"), testEnv)
	if err == nil || !strings.Contains(err.Error(), `keys[0] (id "k1"): scopes: unknown scope "sudo"`) {
		t.Errorf("scope typo: %v", err)
	}
}

func TestExpandEnv(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "no reference", in: "sk-$plain$", want: "sk-$plain$"},
		{name: "whole value", in: "${PARTNER_KEY}", want: envPartner},
		{name: "embedded, twice", in: "a${PART}b${PART}", want: "a0123456789abcdefb0123456789abcdef"},
		{name: "dollar without brace kept", in: "$PART-${PART}", want: "$PART-0123456789abcdef"},
		{name: "unset", in: "${NOPE}", wantErr: "variable NOPE is unset or empty"},
		{name: "empty name", in: "${}", wantErr: "malformed"},
		{name: "leading digit", in: "${1X}", wantErr: "malformed"},
		{name: "unterminated", in: "x${PART", wantErr: "unterminated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := policy.ExpandEnv(tc.in, testEnv)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				noSecret(t, err.Error(), envPartner, "0123456789abcdef")
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := policy.ExpandEnv("${PART}", nil); err == nil {
		t.Error("nil lookup expanded a variable")
	}
}
