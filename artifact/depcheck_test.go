package artifact_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: artifact imports nothing from k2 but its own
// subpackages and internal/ (house style: dependency direction).
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "k2.dev/k2/artifact/...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if !strings.HasPrefix(p, "k2.dev/k2/") {
			continue
		}
		if strings.HasPrefix(p, "k2.dev/k2/artifact") || strings.HasPrefix(p, "k2.dev/k2/internal/") {
			continue
		}
		t.Errorf("artifact depends on %s", p)
	}
}
