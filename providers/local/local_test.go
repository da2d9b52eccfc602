package local_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

func stateConfig(t *testing.T) sdk.Config {
	b, _ := json.Marshal(map[string]any{"stateDir": t.TempDir()})
	return b
}

func TestConformance(t *testing.T) {
	providertest.Run(t, local.New, providertest.WithConfig(stateConfig))
}

// TestRetryAfterCrashBeforePidFile: the plugin died after starting a
// machine's process but before writing its pid file; the retried Create
// finds the process by its working directory instead of starting another.
func TestRetryAfterCrashBeforePidFile(t *testing.T) {
	p := providertest.Connect(t, local.New)
	cfg := stateConfig(t)
	var c struct{ StateDir string }
	json.Unmarshal(cfg, &c)
	ctx := context.Background()
	req := &sdk.CreateRequest{RequestID: "r1", Config: cfg, Machines: []sdk.MachineRequest{{Name: "m1"}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sleep", "600"}}}
	first, err := p.Create(ctx, req)
	if err != nil || first.Diagnostics.HasErrors() {
		t.Fatal(err, first.Diagnostics)
	}
	t.Cleanup(func() { p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"local-m1"}}) })
	dir := filepath.Join(c.StateDir, "machines", "m1")
	if err := os.Remove(filepath.Join(dir, "pid")); err != nil {
		t.Fatal(err)
	}
	again, err := p.Create(ctx, req)
	if err != nil || again.Machines[0].State != sdk.StateRunning || again.Machines[0].Message != first.Machines[0].Message {
		t.Fatalf("retry: %+v %v (first: %+v)", again, err, first.Machines)
	}
	procs := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir {
			procs++
		}
	}
	if procs != 1 {
		t.Errorf("%d processes run in %s, want 1", procs, dir)
	}
}

// TestConsoleFollowEndsWithTheMachine: Console with Follow copies the
// log as it grows and returns, without an error, once the machine is
// deleted.
func TestConsoleFollowEndsWithTheMachine(t *testing.T) {
	p := providertest.Connect(t, local.New)
	cfg := stateConfig(t)
	ctx := context.Background()
	req := &sdk.CreateRequest{RequestID: "r1", Config: cfg, Machines: []sdk.MachineRequest{{Name: "m1"}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sh", "-c", "echo up; exec sleep 600"}}}
	if r, err := p.Create(ctx, req); err != nil || r.Diagnostics.HasErrors() {
		t.Fatal(err, r.Diagnostics)
	}
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- p.Console(ctx, &sdk.ConsoleRequest{Config: cfg, MachineID: "local-m1", Follow: true, Output: out})
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "up"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("console shows %q, want the machine's output", out.String())
		}
	}
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"local-m1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Console after Delete: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Console still following 10 s after the machine was deleted")
	}
}
