package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
)

// processesIn counts live processes whose working directory is dir.
func processesIn(dir string) int {
	n := 0
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd"); err == nil && cwd == dir {
			if b, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil && !containsState(b, 'Z') {
				n++
			}
		}
	}
	return n
}

func containsState(stat []byte, s byte) bool {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' {
			return i+2 < len(stat) && stat[i+2] == s
		}
	}
	return false
}

// TestKillPluginMidCreate kills the built-in local plugin (k2 plugin serve
// local, as k2 runs it) while Create is starting machines: k2 must name
// the plugin, and the retried Create must leave exactly one process per
// machine. Needs K2_BIN.
func TestKillPluginMidCreate(t *testing.T) {
	bin := os.Getenv("K2_BIN")
	if bin == "" {
		t.Skip("needs K2_BIN")
	}
	state := t.TempDir()
	cfg, _ := json.Marshal(map[string]string{"stateDir": state})
	var ms []sdk.MachineRequest
	for i := range 5 {
		ms = append(ms, sdk.MachineRequest{Name: fmt.Sprintf("k%d", i)})
	}
	req := func(onProgress func(sdk.Progress)) *sdk.CreateRequest {
		return &sdk.CreateRequest{RequestID: "kill", Config: cfg, Machines: ms, OnProgress: onProgress,
			Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sleep", "600"}}}
	}
	plugin := host.Plugin{Name: "local", Path: bin, Builtin: true}
	ctx := context.Background()
	p, err := host.Launch(ctx, plugin, host.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	killed := false
	_, err = p.Create(ctx, req(func(ev sdk.Progress) {
		if !killed && ev.Machine == "k1" {
			killed = true
			syscall.Kill(p.Pid(), syscall.SIGKILL)
		}
	}))
	p.Close()
	var he *host.Error
	if !errors.As(err, &he) || !he.Exited || he.Provider != "local" {
		t.Fatalf("Create error = %v, want the local plugin reported as crashed", err)
	}
	t.Logf("reported: %v", err)

	p2, err := host.Launch(ctx, plugin, host.LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	t.Cleanup(func() {
		var ids []string
		for _, m := range ms {
			ids = append(ids, "local-"+m.Name)
		}
		p2.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids})
	})
	resp, err := p2.Create(ctx, req(nil))
	if err != nil || resp.Diagnostics.HasErrors() || len(resp.Machines) != len(ms) {
		t.Fatalf("retry: %v %v", err, resp)
	}
	time.Sleep(200 * time.Millisecond)
	for _, m := range ms {
		if n := processesIn(filepath.Join(state, "machines", m.Name)); n != 1 {
			t.Errorf("machine %s runs %d processes, want 1", m.Name, n)
		}
	}
}
