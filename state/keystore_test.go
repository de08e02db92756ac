package state_test

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
)

func runtimeKey(t *testing.T, id string, mods ...func(*policy.APIKey)) (policy.APIKey, string) {
	t.Helper()
	secret, err := policy.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	k := policy.APIKey{
		ID: id, UserID: "user-" + id, OrganizationID: "org-main",
		Scopes:    []policy.Scope{policy.ScopeRead, policy.ScopeWrite},
		Enabled:   true,
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Source:    policy.SourceRuntime,
	}
	k.SetSecret(secret)
	for _, m := range mods {
		m(&k)
	}
	return k, secret
}

func TestKeyStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "api-keys.json")

	if keys, err := state.LoadKeyStore(p); err != nil || keys != nil {
		t.Fatalf("missing file: %v %v", keys, err)
	}
	a, secretA := runtimeKey(t, "key-a", func(k *policy.APIKey) {
		k.Name, k.Description = "CI", "for the bench runner"
		k.Scopes = []policy.Scope{policy.ScopeAdmin}
		k.RateLimit = 60
		k.ExpiresAt = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		k.AllowedBackends = []string{"qwen-a", "qwen-b"}
	})
	b, secretB := runtimeKey(t, "key-b", func(k *policy.APIKey) { k.Enabled = false })
	want := []policy.APIKey{a, b}
	if err := state.SaveKeyStore(p, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", st.Mode(), err)
	}
	raw, _ := os.ReadFile(p)
	for _, secret := range []string{secretA, secretB} {
		body := strings.TrimPrefix(secret, policy.SecretPrefix)
		if strings.Contains(string(raw), body) || strings.Contains(string(raw), body[:len(body)-4]) {
			t.Fatalf("the store holds a plaintext key:\n%s", raw)
		}
	}
	if !strings.Contains(string(raw), hex.EncodeToString(a.Digest[:])) || !strings.Contains(string(raw), `"version": 1`) {
		t.Errorf("unexpected file:\n%s", raw)
	}

	got, err := state.LoadKeyStore(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	// Reloaded keys authenticate with the secrets handed out at creation.
	set, _, err := policy.NewKeySet(got, []string{"qwen-a", "qwen-b"})
	if err != nil {
		t.Fatal(err)
	}
	if k, err := set.Authenticate(secretA, time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)); err != nil || k.ID != "key-a" || k.Masked() != policy.Mask(secretA) {
		t.Errorf("key-a after reload: %v %v", k, err)
	}
	if _, err := set.Authenticate(secretB, time.Now()); !errors.Is(err, policy.ErrKeyDisabled) {
		t.Errorf("key-b after reload: %v", err)
	}

	// An empty store is written and read back as no keys.
	if err := state.SaveKeyStore(p, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := state.LoadKeyStore(p); err != nil || len(got) != 0 {
		t.Errorf("empty store: %v %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestKeyStoreRefusesKeysWithoutDigest(t *testing.T) {
	p := filepath.Join(t.TempDir(), "api-keys.json")
	for name, k := range map[string]policy.APIKey{
		"no digest": {ID: "a", UserID: "u", OrganizationID: "o", Scopes: []policy.Scope{"read"}},
		"no id":     func() policy.APIKey { k, _ := runtimeKey(t, ""); return k }(),
	} {
		if err := state.SaveKeyStore(p, []policy.APIKey{k}); err == nil {
			t.Errorf("%s: saved", name)
		}
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused save wrote the file: %v", err)
	}
}

func TestKeyStoreCorrupt(t *testing.T) {
	const digest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	entry := func(extra string) string {
		return `{"version":1,"keys":[{"id":"a","user_id":"u","organization_id":"o","scopes":["read"],"enabled":true,"sha256":"` + digest + `"` + extra + `}]}`
	}
	const plaintext = "sk-anvil-plaintext-that-must-not-be-here-0123"
	tests := []struct {
		name, content, want string
	}{
		{"not JSON", `{"version":1,"keys":[`, "invalid JSON: truncated"},
		{"truncated", `{"version":1,"keys":[{"id":`, "invalid JSON: truncated"},
		{"bad syntax", `{"version":1,"keys":[}`, "invalid JSON at byte 22"},
		{"empty file", ``, "empty file"},
		{"wrong version", `{"version":2,"keys":[]}`, "version 2, want 1"},
		{"no keys array", `{"version":1}`, `no "keys" array`},
		{"keys not an array", `{"version":1,"keys":{}}`, "wrong type"},
		{"trailing data", entry("") + `{}`, "trailing data"},
		{"a plaintext key field", entry(`,"key":"` + plaintext + `"`), `unknown field "key"`},
		{"digest not hex", strings.Replace(entry(""), digest, strings.Repeat("zz", 32), 1), `"sha256" is not 64 hex digits`},
		{"digest too short", strings.Replace(entry(""), digest, digest[:62], 1), `"sha256" is not 64 hex digits`},
		{"no id", strings.Replace(entry(""), `"id":"a",`, "", 1), "entry 0 has no id"},
		{"duplicate id", `{"version":1,"keys":[` + entry("")[21:len(entry(""))-2] + `,` + entry("")[21:len(entry(""))-2] + `]}`, `duplicate id "a"`},
		{"unknown scope", strings.Replace(entry(""), `["read"]`, `["root"]`, 1), `unknown scope "root"`},
		{"no scopes", strings.Replace(entry(""), `["read"]`, `[]`, 1), "at least one"},
		{"long last4", entry(`,"last4":"abcde"`), `"last4" is longer`},
		{"bad time", entry(`,"expires_at":"tomorrow"`), "corrupt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "api-keys.json")
			if err := os.WriteFile(p, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			keys, err := state.LoadKeyStore(p)
			if err == nil {
				t.Fatalf("loaded %v, want an error", keys)
			}
			msg := err.Error()
			if !strings.Contains(msg, "key store "+p+" is corrupt") || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want %q", msg, tc.want)
			}
			if strings.Contains(msg, plaintext) || strings.Contains(msg, "plaintext-that") {
				t.Errorf("error quotes file content: %q", msg)
			}
		})
	}
	t.Run("unreadable", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := state.LoadKeyStore(dir); err == nil || !strings.Contains(err.Error(), "key store "+dir) {
			t.Errorf("reading a directory: %v", err)
		}
	})
}
