package tsrouter

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/anvil-serving/anvil-router/policy"
)

// TestRouteTableComplete: every route says its envelope, its API key class
// and a handler per method, and no pattern is served twice. A route added
// without them fails here.
func TestRouteTableComplete(t *testing.T) {
	seen := map[string]bool{}
	for _, rt := range routes() {
		t.Run(rt.pattern, func(t *testing.T) {
			if seen[rt.pattern] {
				t.Errorf("pattern served twice")
			}
			seen[rt.pattern] = true
			if rt.env == envUnset {
				t.Errorf("no envelope")
			}
			if rt.class == policy.PathOther {
				t.Errorf("no API key class (PathOther is for paths the table does not serve)")
			}
			if len(rt.methods) == 0 {
				t.Errorf("no methods")
			}
			for m, f := range rt.methods {
				if f == nil || m == "HEAD" {
					t.Errorf("method %s: nil handler or HEAD (GET answers HEAD)", m)
				}
			}
			if rt.admin != (rt.class == policy.PathAdmin) {
				t.Errorf("admin %v but class %v", rt.admin, rt.class)
			}
		})
	}
}

// TestStatusesMatchREADME: the (status, error.type) pairs declared in
// errors.go are exactly those README.md's "Statuses" table lists.
func TestStatusesMatchREADME(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "\n### Statuses\n")
	if !ok {
		t.Fatal("README.md has no \"### Statuses\" section")
	}
	if i := strings.Index(table, "\n#"); i >= 0 {
		table = table[:i]
	}
	pair := regexp.MustCompile("(\\d{3}) `([a-z_]+)`")
	var documented []string
	for _, line := range strings.Split(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range pair.FindAllStringSubmatch(line, -1) {
			documented = append(documented, m[1]+" "+m[2])
		}
	}
	var declared []string
	for _, k := range kinds {
		declared = append(declared, strconv.Itoa(k.Status)+" "+k.Type)
	}
	slices.Sort(documented)
	documented = slices.Compact(documented)
	slices.Sort(declared)
	for _, d := range declared {
		if !slices.Contains(documented, d) {
			t.Errorf("declared but not in README's status table: %s", d)
		}
	}
	for _, d := range documented {
		if !slices.Contains(declared, d) {
			t.Errorf("in README's status table but not declared: %s", d)
		}
	}
}

// TestErrorsWrittenInOnePlace: no file but errors.go builds an apiError
// or writes an error body; handlers return errors.
func TestErrorsWrittenInOnePlace(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || name == "errors.go" {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "apiError" {
					t.Errorf("%s: apiError built outside errors.go", fset.Position(n.Pos()))
				}
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "writeError" || id.Name == "errorBody") {
					t.Errorf("%s: %s called outside errors.go", fset.Position(n.Pos()), id.Name)
				}
			}
			return true
		})
	}
}
