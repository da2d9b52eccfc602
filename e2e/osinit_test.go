package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// TestInitConfigNotPID1 is the path a machine that is already booted takes
// (cloud-init on a stock image, the EC2 fake's namespace "instances"):
// `k2 os config gen` makes the configs, `k2 init --config FILE` runs in a
// network namespace per machine — the control plane's serving the
// cluster and being a node itself, the worker's joining it — and the real
// kubectl sees both nodes Ready. `k2 init status` reports them and
// `k2 init stop` stops each cleanly.
func TestInitConfigNotPID1(t *testing.T) {
	requireLab(t)
	home := t.TempDir()
	l := newLab(t)
	cpNS, wNS := l.addNamespace(10), l.addNamespace(11)
	dir := t.TempDir()
	mustK2(t, home, "os", "config", "gen", "--dir", dir, "--server-address", labSubnet+".10", "--workers", "1", "--data-disk", "none", "--runtime", "sim")
	check := mustK2(t, home, "os", "config", "check", filepath.Join(dir, "worker-1.yaml"), "-o", "json")
	if !strings.Contains(check.Stdout, `"role": "worker"`) || !strings.Contains(check.Stdout, "REDACTED") {
		t.Errorf("k2 os config check -o json:\n%s", check.Stdout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type machine struct {
		name, ns, config, socket string
		cmd                      *exec.Cmd
		out                      *testutil.SyncBuffer
		done                     chan error
	}
	var ms []*machine
	for _, m := range []*machine{{name: "cp", ns: cpNS, config: "control-plane.yaml"}, {name: "w1", ns: wNS, config: "worker-1.yaml"}} {
		m.socket = filepath.Join(dir, m.name+".sock")
		m.out = &testutil.SyncBuffer{}
		m.cmd = nsCommand(ctx, m.ns, k2Bin, "init", "--config", filepath.Join(dir, m.config), "--data-dir", filepath.Join(dir, m.name), "--socket", m.socket)
		m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		m.done = make(chan error, 1)
		go func() { m.done <- m.cmd.Wait() }()
		ms = append(ms, m)
	}
	defer func() {
		for _, m := range ms {
			if t.Failed() {
				t.Logf("k2 init %s output:\n%s", m.name, m.out.String())
			}
		}
	}()
	kubectl := func(args ...string) (string, error) {
		out, err := nsCommand(ctx, cpNS, append([]string{"kubectl", "--kubeconfig", filepath.Join(dir, "admin.kubeconfig")}, args...)...).CombinedOutput()
		return string(out), err
	}
	eventually(t, 2*time.Minute, "2 Ready nodes", func() error {
		out, err := kubectl("get", "nodes", "--no-headers")
		if err != nil {
			return err
		}
		if strings.Count(out, " Ready") != 2 || !strings.Contains(out, "control-plane") || !strings.Contains(out, "worker-1") {
			return fmt.Errorf("nodes:\n%s", out)
		}
		return nil
	})
	st := k2InNS(t, cpNS, home, "init", "status", "--socket", ms[0].socket, "-o", "json")
	var status struct {
		Phase     string
		Role      string
		Processes []struct {
			Name    string
			Running bool
		}
	}
	if err := json.Unmarshal([]byte(st), &status); err != nil {
		t.Fatalf("k2 init status -o json: %v\n%s", err, st)
	}
	if status.Phase != "running" || status.Role != "control-plane" || len(status.Processes) != 2 || !status.Processes[0].Running || !status.Processes[1].Running {
		t.Errorf("control plane's k2 init status: %s", st)
	}
	// Stop the worker first, then the control plane: each exits cleanly.
	for _, m := range []*machine{ms[1], ms[0]} {
		k2InNS(t, m.ns, home, "init", "stop", "--socket", m.socket)
		select {
		case err := <-m.done:
			if err != nil {
				t.Errorf("k2 init %s exited with %v", m.name, err)
			}
		case <-time.After(2 * time.Minute):
			t.Fatalf("k2 init %s did not stop", m.name)
		}
		if out := m.out.String(); !strings.Contains(out, "process stopped") || strings.Contains(out, "did not stop") {
			t.Errorf("k2 init %s did not stop its children cleanly:\n%s", m.name, out)
		}
	}
}

// k2InNS runs the k2 binary in network namespace ns and returns stdout.
func k2InNS(t *testing.T, ns, home string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := nsCommand(ctx, ns, append([]string{k2Bin}, args...)...)
	cmd.Env = append(cmd.Environ(), "K2_HOME="+home)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("k2 %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}
