// Package tools holds the tools k2's build uses that the main module does
// not depend on (golangci-lint), and the test that its layering rules
// catch what they are meant to.
package tools

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// linter returns the golangci-lint binary: $GOLANGCI_LINT (make lint sets
// it), else one built from this module.
func linter(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("GOLANGCI_LINT"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "golangci-lint")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/golangci/golangci-lint/v2/cmd/golangci-lint").CombinedOutput()
	if err != nil {
		t.Fatalf("building golangci-lint: %v\n%s", err, out)
	}
	return bin
}

var issueRE = regexp.MustCompile(`(?m)^(?:tools/testdata/layering/)?([^\s:]+\.go):\d+:\d+: import '([^']+)' is not allowed from list '([^']+)'`)

// TestLayering runs the repository's .golangci.yml on testdata/layering, a
// module that mirrors k2's layout, and checks that depguard reports the
// three violations in it — providers/local importing provision/engine,
// state importing provision/engine, a test kit in non-test code — and
// nothing else (a provider importing the SDK and a test importing the kit
// are fine).
func TestLayering(t *testing.T) {
	bin := linter(t)
	cfg, err := filepath.Abs("../.golangci.yml")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--enable-only", "depguard", "./...")
	cmd.Dir = "testdata/layering"
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("golangci-lint found nothing:\n%s", out)
	}
	var got []string
	for _, m := range issueRE.FindAllStringSubmatch(string(out), -1) {
		got = append(got, m[1]+" "+m[2]+" "+m[3])
	}
	slices.Sort(got)
	want := []string{
		"providers/local/bad.go k2.dev/k2/provision/engine providers",
		"provision/engine/kit.go k2.dev/k2/internal/testutil test-kits",
		"state/state.go k2.dev/k2/provision/engine state",
	}
	if !slices.Equal(got, want) {
		t.Errorf("depguard reported\n  %q\nwant\n  %q\nfull output:\n%s", got, want, out)
	}
}
