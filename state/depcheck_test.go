package state

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDependencies keeps state at the bottom of k2's import graph: it may use
// k2.dev/k2/internal/... and nothing else from k2 (STYLE.md).
func TestDependencies(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(p, "k2.dev/k2/") && !strings.HasPrefix(p, "k2.dev/k2/internal/") {
				t.Errorf("%s imports %s; state may import only k2.dev/k2/internal/...", f, p)
			}
		}
	}
}
