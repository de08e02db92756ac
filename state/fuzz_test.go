package state_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
)

// FuzzLoadKeyStore: any store file gives keys or an error, never a panic;
// loaded keys have digests, and a loaded set the router accepts
// round-trips through SaveKeyStore.
func FuzzLoadKeyStore(f *testing.F) {
	k := policy.APIKey{ID: "a", UserID: "u", OrganizationID: "o", Scopes: []policy.Scope{policy.ScopeRead}, Enabled: true}
	k.SetSecret("sk-test-0123456789abcdef0123456789")
	seed := filepath.Join(f.TempDir(), "seed.json")
	if err := state.SaveKeyStore(seed, []policy.APIKey{k}); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(seed)
	f.Add(b)
	f.Add([]byte(`{"version":1,"keys":[]}`))
	f.Add([]byte(`{"version":1,"keys":[{"id":"x","sha256":"zz"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		keys, err := state.LoadKeyStore(p)
		if err != nil {
			return
		}
		for _, k := range keys {
			if k.Digest == ([32]byte{}) {
				t.Fatalf("loaded key %q without a digest", k.ID)
			}
		}
		if _, _, err := policy.NewKeySet(keys, nil); err != nil {
			return // the router refuses to start with these; nothing to save
		}
		if err := state.SaveKeyStore(p, keys); err != nil {
			t.Fatalf("re-saving loaded keys: %v", err)
		}
		again, err := state.LoadKeyStore(p)
		if err != nil || len(again) != len(keys) {
			t.Fatalf("round trip: %d keys, %v; had %d", len(again), err, len(keys))
		}
	})
}

// FuzzLoadQuiesceIntent: any admission state file gives an intent or an
// error, never a panic, and a loaded intent saves and loads again.
func FuzzLoadQuiesceIntent(f *testing.F) {
	f.Add([]byte(`{"version":1,"tiers":{"a":"operator","b":"promotion"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tiers":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(t.TempDir(), "admission.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		in, err := state.LoadQuiesceIntent(p)
		if err != nil {
			return
		}
		if err := state.SaveQuiesceIntent(p, in); err != nil {
			t.Fatalf("re-saving: %v", err)
		}
		if _, err := state.LoadQuiesceIntent(p); err != nil {
			t.Fatalf("round trip: %v", err)
		}
	})
}
