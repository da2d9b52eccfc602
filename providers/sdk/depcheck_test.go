package sdk_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: the SDK is what external plugin authors import, so it
// depends on nothing else in k2 (only its own internal proto), and never on
// Kubernetes.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "k2.dev/k2/providers/sdk").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(dep, "k2.dev/k2/") && !strings.HasPrefix(dep, "k2.dev/k2/providers/sdk"):
			t.Errorf("providers/sdk depends on %s", dep)
		case strings.HasPrefix(dep, "k8s.io/"):
			t.Errorf("providers/sdk depends on %s", dep)
		}
	}
}
