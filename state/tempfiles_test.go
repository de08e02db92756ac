package state_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anvil-serving/anvil-router/policy"
	"github.com/anvil-serving/anvil-router/state"
)

// TestRemoveStaleTemps: a kill -9 between CreateTemp and the rename leaves
// ".<name>.tmp-*" beside the file; at the next start those (and only
// those, and only old ones) are removed.
func TestRemoveStaleTemps(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "anvil-api-keys.json")
	old := time.Now().Add(-time.Hour)
	files := map[string]time.Time{
		"anvil-api-keys.json":               old,
		".anvil-api-keys.json.tmp-123456":   old, // debris: removed
		".anvil-api-keys.json.tmp-999":      old, // debris: removed
		".anvil-api-keys.json.tmp-inflight": {},  // just written: kept
		".admission.json.tmp-1":             old, // another file's: kept
		"anvil-api-keys.json.tmp-1":         old, // not our naming: kept
	}
	for name, mtime := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			os.Chtimes(p, mtime, mtime)
		}
	}
	n, err := state.RemoveStaleTemps(store)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStaleTemps = %d, %v; want 2", n, err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{".admission.json.tmp-1", ".anvil-api-keys.json.tmp-inflight", "anvil-api-keys.json", "anvil-api-keys.json.tmp-1"}
	if !slices.Equal(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	if n, err := state.RemoveStaleTemps(filepath.Join(dir, "missing", "x.json")); n != 0 || err != nil {
		t.Errorf("missing dir: %d %v", n, err)
	}
}

func TestSaveKeyStoreCreatesItsDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "state", "new", "keys.json")
	k := policy.APIKey{ID: "a", UserID: "u", OrganizationID: "o", Scopes: []policy.Scope{policy.ScopeRead}, Enabled: true}
	k.SetSecret("sk-test-0123456789abcdef0123456789")
	if err := state.SaveKeyStore(p, []policy.APIKey{k}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Dir(p))
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("dir %v %v, want 0700", st, err)
	}
	keys, err := state.LoadKeyStore(p)
	if err != nil || len(keys) != 1 {
		t.Errorf("load: %v %v", keys, err)
	}
}
