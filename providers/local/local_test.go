package local_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

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
