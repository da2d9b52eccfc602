// Package e2e drives the built k2 binary as a user would. The tests run only
// with K2_E2E=1 (make test-e2e and .ci/run set it); K2_BIN names the binary,
// otherwise TestMain builds one.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

var k2Bin string

func TestMain(m *testing.M) {
	if os.Getenv("K2_E2E") == "" {
		fmt.Println("e2e: skipped; set K2_E2E=1 (make test-e2e) to run against the built binary")
		os.Exit(0)
	}
	k2Bin = os.Getenv("K2_BIN")
	if k2Bin == "" {
		dir, err := os.MkdirTemp("", "k2-e2e-bin")
		if err != nil {
			panic(err)
		}
		k2Bin = filepath.Join(dir, "k2")
		cmd := exec.Command("go", "build", "-o", k2Bin, "../cmd/k2")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Println("e2e: building k2:", err)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// result is the outcome of one k2 invocation.
type result struct {
	Stdout, Stderr string
	Code           int
}

// k2 runs the binary with args, K2_HOME set to home, and returns its output
// and exit code. It fails the test only if the binary could not be started.
func k2(t testing.TB, home string, args ...string) result {
	t.Helper()
	return k2At(t, k2Bin, home, args...)
}

// k2At is k2 with the binary at bin (a copy of k2Bin elsewhere).
func k2At(t testing.TB, bin, home string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Stdout: out.String(), Stderr: errb.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running k2 %v: %v", args, err)
	}
	return r
}

// mustK2 is k2 that fails the test on a non-zero exit.
func mustK2(t testing.TB, home string, args ...string) result {
	t.Helper()
	r := k2(t, home, args...)
	if r.Code != 0 {
		t.Fatalf("k2 %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, r.Code, r.Stdout, r.Stderr)
	}
	return r
}
