// Package supervise runs a command and restarts it when it fails, as an
// init system would. k2's local provider runs each machine's `k2 agent`
// or `k2 server` under it (`k2 supervise`): upstream components leave
// some failures to a babysitter — the kubelet exits when cAdvisor or its
// container manager cannot start, "relying on the babysitter to retry" —
// and on k2 OS that is k2 init; on a local machine it is this.
//
// A command that keeps failing soon after it starts is not retried
// forever: after MaxQuickFailures such exits in a row supervision ends
// with the command's exit status, so that a machine that cannot start
// shows as failed and its log says why.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Prefix starts every line the supervisor writes to its output, so that
// readers of the log can tell its notes from the command's.
const Prefix = "k2 supervise: "

// Options configure Run. Argv is required.
type Options struct {
	Argv []string
	// Stdout and Stderr are the command's; the supervisor's notes go to
	// Stderr too. Default: discarded.
	Stdout, Stderr io.Writer
	// Quick is how soon after its start an exit counts as a quick
	// failure; default 30 s.
	Quick time.Duration
	// MaxQuickFailures quick failures in a row end supervision; default 3.
	MaxQuickFailures int
	// MinBackoff is the first restart delay, doubled for each quick
	// failure in a row; default 1 s.
	MinBackoff time.Duration
}

// ExitError is how Run ends when it gave up on a command that kept
// failing: Code is its last exit status (128+signal for a signal).
type ExitError struct {
	Code     int
	Failures int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("the command failed %d times in a row soon after starting (last exit status %d)", e.Failures, e.Code)
}

// Run runs the command until it exits with status 0 or ctx ends, and
// restarts it after any other exit. When ctx ends the command gets
// SIGTERM and Run waits for it to exit; that is a clean end (nil).
func Run(ctx context.Context, o Options) error {
	if len(o.Argv) == 0 {
		return errors.New("supervise: no command")
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Quick == 0 {
		o.Quick = 30 * time.Second
	}
	if o.MaxQuickFailures == 0 {
		o.MaxQuickFailures = 3
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = time.Second
	}
	name := filepath.Base(o.Argv[0]) // "k2 agent", "sh"
	if len(o.Argv) > 1 && !strings.HasPrefix(o.Argv[1], "-") && filepath.Base(o.Argv[1]) == o.Argv[1] {
		name += " " + o.Argv[1]
	}
	quick := 0
	for {
		start := time.Now()
		cmd := exec.Command(o.Argv[0], o.Argv[1:]...)
		cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		var err error
		select {
		case err = <-exited:
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
			return nil
		}
		code, how := exitStatus(err)
		if code == 0 {
			return nil
		}
		ran := time.Since(start)
		if ran < o.Quick {
			quick++
		} else {
			quick = 0 // it ran well for a while
		}
		if quick >= o.MaxQuickFailures {
			fmt.Fprintf(o.Stderr, "%s%s %s %s after it started, the %s quick failure in a row: not restarting it\n",
				Prefix, name, how, ran.Round(time.Millisecond), ordinal(quick))
			return &ExitError{Code: code, Failures: quick}
		}
		backoff := min(o.MinBackoff<<max(quick-1, 0), 30*time.Second)
		fmt.Fprintf(o.Stderr, "%s%s %s %s after it started; restarting it in %s\n", Prefix, name, how, ran.Round(time.Millisecond), backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// exitStatus is a command's exit code (128+n for signal n) and how it
// ended, in words.
func exitStatus(err error) (int, string) {
	if err == nil {
		return 0, "exited"
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 1, "failed: " + err.Error()
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), fmt.Sprintf("was killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return ee.ExitCode(), fmt.Sprintf("exited with status %d", ee.ExitCode())
}

func ordinal(n int) string {
	switch n {
	case 1:
		return "1st"
	case 2:
		return "2nd"
	case 3:
		return "3rd"
	}
	return fmt.Sprintf("%dth", n)
}

// Exit ends this process as the supervised command ended: with its last
// exit status after Run gave up, 1 after any other error, 0 otherwise.
func Exit(err error) {
	var ee *ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ee):
		os.Exit(ee.Code)
	}
	fmt.Fprintln(os.Stderr, Prefix+err.Error())
	os.Exit(1)
}
