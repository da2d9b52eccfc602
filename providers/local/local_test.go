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

// TestFailedMachineSaysWhy: a machine whose process exited is listed
// failed, with the reason its log gives: the error k2 printed last (all
// its lines), a Go runtime's fatal error rather than the stack after it,
// or else the last line.
func TestFailedMachineSaysWhy(t *testing.T) {
	p := providertest.Connect(t, local.New)
	cfg := stateConfig(t)
	ctx := context.Background()
	scripts := map[string]struct{ script, want string }{
		"k2error": {`echo 'level=INFO msg="joined"'; echo 'k2: the kubelet runtime cannot run here:' >&2; echo '  - no shim' >&2; echo '(try auto)' >&2; exit 1`,
			"process exited: k2: the kubelet runtime cannot run here: - no shim (try auto)"},
		"crash": {`echo 'fatal error: concurrent map writes' >&2; echo 'goroutine 1 [running]:' >&2; echo '	main.go:3' >&2; exit 2`,
			"process exited: fatal error: concurrent map writes"},
		// The last of a restarted agent's errors, without the notes of
		// its supervisor (k2 supervise) around it.
		"supervised": {`echo 'k2: boom'; echo 'k2 supervise: k2 exited with status 1 0.1s after it started; restarting it in 1s'; ` +
			`echo 'time=1 level=INFO msg=up'; echo 'k2: bang:'; echo '  - why'; echo 'k2 supervise: k2 exited with status 1 0.1s after it started, the 2nd quick failure in a row: not restarting it'; exit 1`,
			"process exited: k2: bang: - why"},
		"plain":  {`echo one; echo 'two: last'; exit 3`, "process exited: two: last"},
		"silent": {`exit 4`, "process exited: no output; see "},
	}
	for name, s := range scripts {
		req := &sdk.CreateRequest{RequestID: "r-" + name, Config: cfg, Machines: []sdk.MachineRequest{{Name: name}},
			Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sh", "-c", s.script}}}
		if r, err := p.Create(ctx, req); err != nil || r.Diagnostics.HasErrors() {
			t.Fatal(err, r.Diagnostics)
		}
	}
	t.Cleanup(func() {
		var ids []string
		for name := range scripts {
			ids = append(ids, "local-"+name)
		}
		p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids})
	})
	var got map[string]sdk.Machine
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]sdk.Machine{}
		failed := 0
		for _, m := range l.Machines {
			got[m.Name] = m
			if m.State == sdk.StateFailed {
				failed++
			}
		}
		if failed == len(scripts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s, machines %+v; want all %d failed", l.Machines, len(scripts))
		}
	}
	for name, s := range scripts {
		if m := got[name]; !strings.HasPrefix(m.Message, s.want) {
			t.Errorf("machine %s: message %q, want %q", name, m.Message, s.want)
		}
	}
}
