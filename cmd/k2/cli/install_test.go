package cli

import (
	"strings"
	"testing"
)

// TestInstallNeedsATerminal: without a terminal k2 install refuses with a
// usage error that points at k2 deploy, and makes nothing.
func TestInstallNeedsATerminal(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{{"install"}, {"install", "hello:v1"}, {"install", "--resume", "dev"}} {
		out, code := run(t, home, args...)
		if code != 2 || !strings.Contains(out, "needs a terminal") || !strings.Contains(out, "k2 deploy REF --provider") {
			t.Errorf("k2 %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	if out, code := run(t, home, "env", "ls"); code != 0 || !strings.Contains(out, "no environments") {
		t.Errorf("after the refusals: exit %d\n%s", code, out)
	}
}
