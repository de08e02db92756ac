package config_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOnlyCmdImportsConfig keeps the config package a leaf: it translates
// the router file into the inputs of backends, policy and tsrouter, so no
// package outside cmd/ may import it (their tests may, to build fixtures
// from TOML). A transitive import needs a direct one somewhere, so the
// direct imports of every package are enough.
func TestOnlyCmdImportsConfig(t *testing.T) {
	const module = "github.com/anvil-serving/anvil-router"
	const cfgPkg = module + "/tsrouter/config"
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list imports: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/...")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var checked int
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		checked++
		if pkg == cfgPkg || strings.HasPrefix(pkg, module+"/cmd/") {
			continue
		}
		for _, imp := range imports {
			if imp == cfgPkg {
				t.Errorf("%s imports %s; only packages under cmd/ may (give it its own input type instead)", pkg, cfgPkg)
			}
		}
	}
	if checked < 5 {
		t.Fatalf("go list reported %d packages; the check did not run", checked)
	}
}
