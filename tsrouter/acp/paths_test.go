package acp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolvePath(t *testing.T) {
	root, _ := filepath.EvalSymlinks(t.TempDir())
	cwd := filepath.Join(root, "proj")
	outside := filepath.Join(root, "secret")
	os.MkdirAll(filepath.Join(cwd, "src"), 0o755)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "key"), []byte("k"), 0o600)
	os.Symlink(outside, filepath.Join(cwd, "link-out"))
	os.Symlink(filepath.Join(cwd, "src"), filepath.Join(cwd, "link-in"))
	cases := []struct {
		name, path, want string
		bad              bool
	}{
		{"relative", "src/a.go", filepath.Join(cwd, "src/a.go"), false},
		{"absolute inside", filepath.Join(cwd, "b.txt"), filepath.Join(cwd, "b.txt"), false},
		{"new file in new dir", "new/dir/c.txt", filepath.Join(cwd, "new/dir/c.txt"), false},
		{"cwd itself", ".", cwd, false},
		{"dot-dot", "../secret/key", "", true},
		{"dot-dot inside then out", "src/../../secret/key", "", true},
		{"absolute outside", "/etc/passwd", "", true},
		{"sibling with the same prefix", cwd + "-other/x", "", true},
		{"symlink out", "link-out/key", "", true},
		{"new file under a symlink out", "link-out/new.txt", "", true},
		{"symlink within", "link-in/a.go", filepath.Join(cwd, "link-in/a.go"), false},
		{"empty", "", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolvePath(cwd, tc.path)
			if tc.bad {
				if err == nil {
					t.Fatalf("resolvePath(%q) = %q, want an error", tc.path, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolvePath(%q) = %q, %v; want %q", tc.path, got, err, tc.want)
			}
		})
	}
}

func TestSearchFiles(t *testing.T) {
	cwd := t.TempDir()
	os.MkdirAll(filepath.Join(cwd, "pkg"), 0o755)
	os.MkdirAll(filepath.Join(cwd, ".git"), 0o755)
	os.MkdirAll(filepath.Join(cwd, "node_modules", "x"), 0o755)
	os.WriteFile(filepath.Join(cwd, "pkg", "a.go"), []byte("package pkg\nfunc Needle() {}\n"), 0o644)
	os.WriteFile(filepath.Join(cwd, ".git", "config"), []byte("Needle\n"), 0o644)
	os.WriteFile(filepath.Join(cwd, "node_modules", "x", "i.js"), []byte("Needle\n"), 0o644)
	os.WriteFile(filepath.Join(cwd, "bin"), []byte("Needle\x00\n"), 0o644)
	got, err := searchFiles(context.Background(), cwd, cwd, `Need+le`)
	if err != nil {
		t.Fatal(err)
	}
	if got != "pkg/a.go:2: func Needle() {}" {
		t.Errorf("search = %q", got)
	}
	if got, _ := searchFiles(context.Background(), cwd, cwd, "absent"); got != "no matches" {
		t.Errorf("no match = %q", got)
	}
	if _, err := searchFiles(context.Background(), cwd, cwd, "("); err == nil || !strings.Contains(err.Error(), "pattern") {
		t.Errorf("bad pattern: %v", err)
	}
}
