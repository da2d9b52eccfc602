package engine

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDependencies keeps the engine on its side of the graph (STYLE.md):
// it may use artifact, state, the provider SDK's types and internal; it
// receives providers through the Provider interface, never host or a
// built-in provider, and never imports cmd or tui.
func TestDependencies(t *testing.T) {
	allowed := []string{"k2.dev/k2/artifact", "k2.dev/k2/state", "k2.dev/k2/providers/sdk", "k2.dev/k2/internal/"}
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
			if !strings.HasPrefix(p, "k2.dev/k2/") {
				continue
			}
			ok := false
			for _, a := range allowed {
				if p == a || strings.HasPrefix(p, strings.TrimSuffix(a, "/")+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}
