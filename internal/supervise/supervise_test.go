package supervise

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// TestRestartsUntilItWorks: a command that fails twice and then runs is
// restarted (with the supervisor's notes in its output) and its clean
// exit ends Run.
func TestRestartsUntilItWorks(t *testing.T) {
	dir := t.TempDir()
	count := filepath.Join(dir, "count")
	// Fails on its 1st and 2nd run, exits 0 on its 3rd.
	script := `n=$(cat ` + count + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n > ` + count + `; echo "run $n"; [ $n -ge 3 ] || exit 7`
	out := &testutil.SyncBuffer{}
	err := Run(context.Background(), Options{Argv: []string{"sh", "-c", script}, Stdout: out, Stderr: out,
		MinBackoff: 10 * time.Millisecond, MaxQuickFailures: 3})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out)
	}
	for _, want := range []string{"run 1\n", Prefix + "sh exited with status 7 ", "restarting it in 10ms\n", "run 2\n", "restarting it in 20ms\n", "run 3\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestGivesUpOnQuickFailures: a command that fails at once every time
// ends Run after MaxQuickFailures tries, with its exit status; a signal
// counts as 128+n.
func TestGivesUpOnQuickFailures(t *testing.T) {
	for _, tt := range []struct {
		script string
		code   int
		how    string
	}{
		{"echo no; exit 5", 5, "exited with status 5"},
		{"kill -9 $$", 137, "was killed by signal 9 (killed)"},
	} {
		out := &testutil.SyncBuffer{}
		err := Run(context.Background(), Options{Argv: []string{"sh", "-c", tt.script}, Stdout: out, Stderr: out,
			MinBackoff: time.Millisecond, MaxQuickFailures: 2})
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != tt.code || ee.Failures != 2 {
			t.Errorf("%q: Run = %v, want exit status %d after 2 failures", tt.script, err, tt.code)
		}
		if !strings.Contains(out.String(), Prefix+"sh "+tt.how) || !strings.Contains(out.String(), "2nd quick failure in a row: not restarting it") {
			t.Errorf("%q: output:\n%s", tt.script, out)
		}
	}
}

// TestStopEndsTheCommand: the end of ctx sends the command SIGTERM and
// Run returns nil once it has exited, without restarting it.
func TestStopEndsTheCommand(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "stopped")
	out := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Argv: []string{"sh", "-c", `trap 'echo bye > ` + marker + `; exit 0' TERM; echo up; while :; do sleep 0.05; done`},
			Stdout: out, Stderr: out})
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "up"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command did not start")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running 10 s after its context ended")
	}
	if b, err := os.ReadFile(marker); err != nil || string(b) != "bye\n" {
		t.Errorf("the command did not get SIGTERM: %q %v", b, err)
	}
	if strings.Contains(out.String(), Prefix) {
		t.Errorf("a stopped command was reported or restarted:\n%s", out)
	}
}
