package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIBasics checks the spine every command relies on: version in text and
// JSON, help that lists commands, and the usage exit code.
func TestCLIBasics(t *testing.T) {
	home := t.TempDir()
	r := mustK2(t, home, "version", "-o", "json")
	var v struct{ Version, Kubernetes string }
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, r.Stdout)
	}
	if v.Kubernetes != "v1.37.2" || v.Version == "" {
		t.Errorf("version = %+v, want kubernetes v1.37.2 and a k2 version", v)
	}
	if r := mustK2(t, home, "--help"); !strings.Contains(r.Stdout, "Exit codes") {
		t.Errorf("--help does not document exit codes:\n%s", r.Stdout)
	}
	for _, args := range [][]string{{"no-such-command"}, {"version", "--no-such-flag"}, {"version", "-o", "yaml"}} {
		if r := k2(t, home, args...); r.Code != 2 {
			t.Errorf("k2 %v: exit %d, want 2 (usage)\n%s", args, r.Code, r.Stderr)
		}
	}
}
