package state_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/state"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "intent.json")
	for _, content := range []string{`{"v":1}`, `{"v":2,"longer":true}`, `{}`} {
		if err := state.WriteFileAtomic(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(p)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := state.WriteFileAtomic(filepath.Join(dir, "missing", "x"), []byte("x"), 0o600); err == nil {
		t.Error("want an error for a missing directory")
	}
}

func TestQuiesceIntent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "admission.json")

	in, err := state.LoadQuiesceIntent(p)
	if err != nil || len(in.Tiers) != 0 {
		t.Fatalf("missing file: %v %v", in, err)
	}
	want := state.QuiesceIntent{Tiers: map[string]string{"qwen-b": "operator", "qwen-a": "promotion"}}
	if err := state.SaveQuiesceIntent(p, want); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != `{"version":1,"tiers":{"qwen-a":{"state":"quiesced","reason":"promotion"},"qwen-b":{"state":"quiesced","reason":"operator"}}}` {
		t.Errorf("file %s", b)
	}
	got, err := state.LoadQuiesceIntent(p)
	if err != nil || len(got.Tiers) != 2 || got.Tiers["qwen-b"] != "operator" {
		t.Errorf("round trip: %v %v", got, err)
	}

	for name, content := range map[string]string{
		"not JSON":      `{"version":1,"tiers":`,
		"no tiers":      `{"version":1}`,
		"tiers not map": `{"version":1,"tiers":[]}`,
		"bad entry":     `{"version":1,"tiers":{"a":{"state":"weird"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(p, []byte(content), 0o600)
			if _, err := state.LoadQuiesceIntent(p); err == nil || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("got %v, want a corrupt-file error", err)
			}
		})
	}
}
