package state_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/anvil-serving/anvil-router/state"
)

func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("%s does not end with a newline", path)
	}
	return lines
}

func TestDecisionLogAppend(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"adds newline", []string{`{"a":1}`}, []string{`{"a":1}`}},
		{"keeps one trailing newline", []string{"{\"a\":1}\n", `{"b":2}`}, []string{`{"a":1}`, `{"b":2}`}},
		{"empty record is a line", []string{""}, []string{""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "decisions.jsonl")
			d, err := state.OpenDecisionLog(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range tc.lines {
				if err := d.Append([]byte(l)); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			got := readLines(t, p)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("lines %q, want %q", got, tc.want)
			}
			st, err := os.Stat(p)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, %v; want 0600", st.Mode(), err)
			}
		})
	}
}

func TestDecisionLogAppendsToExistingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "decisions.jsonl")
	if err := os.WriteFile(p, []byte("{\"old\":1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := state.OpenDecisionLog(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Append([]byte(`{"new":1}`)); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got := readLines(t, p); len(got) != 2 || got[0] != `{"old":1}` {
		t.Errorf("lines %q", got)
	}
}

func TestDecisionLogRefusesEmbeddedNewline(t *testing.T) {
	d, err := state.OpenDecisionLog(filepath.Join(t.TempDir(), "d.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Append([]byte("{}\n{}")); err == nil {
		t.Error("want an error for a record with an embedded newline")
	}
}

func TestOpenDecisionLogErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{"missing parent dir", filepath.Join(dir, "missing", "d.jsonl")},
		{"parent is a file", filepath.Join(file, "d.jsonl")},
		{"path is a directory", dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d, err := state.OpenDecisionLog(tc.path); err == nil {
				d.Close()
				t.Fatalf("OpenDecisionLog(%q) succeeded", tc.path)
			}
		})
	}
}

func TestDecisionLogClosed(t *testing.T) {
	d, err := state.OpenDecisionLog(filepath.Join(t.TempDir(), "d.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Append([]byte("{}")); !errors.Is(err, state.ErrDecisionLogClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDecisionLogRotation(t *testing.T) {
	tests := []struct {
		name     string
		maxBytes int64
		records  int
		// wantCur/wantOld: lines in path and path.1 afterwards.
		wantCur, wantOld int
	}{
		// Each record is 10 bytes with its newline.
		{"below threshold", 100, 9, 9, 0},
		{"exactly at threshold rotates", 100, 10, 0, 10},
		{"one generation only", 30, 10, 1, 3},
		{"disabled", 0, 20, 20, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "decisions.jsonl")
			d, err := state.OpenDecisionLog(p)
			if err != nil {
				t.Fatal(err)
			}
			d.MaxBytes = tc.maxBytes
			for i := range tc.records {
				if err := d.Append(fmt.Appendf(nil, `{"i":%03d}`, i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			cur := readLines(t, p)
			if len(cur) != tc.wantCur {
				t.Errorf("current file has %d lines, want %d", len(cur), tc.wantCur)
			}
			old, err := os.ReadFile(p + ".1")
			switch {
			case tc.wantOld == 0 && !os.IsNotExist(err):
				t.Errorf("unexpected %s.1 (%v)", p, err)
			case tc.wantOld > 0:
				if got := bytes.Count(old, []byte{'\n'}); got != tc.wantOld {
					t.Errorf("old generation has %d lines, want %d", got, tc.wantOld)
				}
				if st, err := os.Stat(p + ".1"); err != nil || st.Mode().Perm() != 0o600 {
					t.Errorf("old generation mode %v, %v", st.Mode(), err)
				}
			}
			// The newest records are always in the current file or
			// the one old generation, in order.
			if tc.records > 0 && tc.wantCur+tc.wantOld > 0 {
				all := append(readOptional(p+".1"), cur...)
				want := fmt.Sprintf(`{"i":%03d}`, tc.records-1)
				if all[len(all)-1] != want {
					t.Errorf("last record %q, want %q", all[len(all)-1], want)
				}
			}
		})
	}
}

func readOptional(path string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for l := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
		out = append(out, string(l))
	}
	return out
}

func TestDecisionLogConcurrentAppends(t *testing.T) {
	p := filepath.Join(t.TempDir(), "decisions.jsonl")
	d, err := state.OpenDecisionLog(p)
	if err != nil {
		t.Fatal(err)
	}
	d.MaxBytes = 4096 // rotate several times while writers race
	const writers, each = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if err := d.Append(fmt.Appendf(nil, `{"w":%d,"i":%04d,"pad":"xxxxxxxxxxxxxxxx"}`, w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Every line in both generations must be one whole record.
	for _, f := range []string{p, p + ".1"} {
		for _, l := range readOptional(f) {
			if l == "" {
				continue
			}
			var w, i int
			var pad string
			if n, err := fmt.Sscanf(l, `{"w":%d,"i":%d,"pad":%q}`, &w, &i, &pad); n != 3 || err != nil {
				t.Fatalf("torn line %q in %s: %v", l, f, err)
			}
		}
	}
}
