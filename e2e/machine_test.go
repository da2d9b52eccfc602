package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// providerStates maps machine name → the provider's state of it.
func (st deployStatus) providerStates() map[string]string {
	out := map[string]string{}
	for _, m := range st.Machines {
		out[m.Name] = m.ProviderState
	}
	return out
}

func (st deployStatus) nodeReady(name string) bool {
	for _, n := range st.Nodes {
		if n.Name == name {
			return n.Ready
		}
	}
	return false
}

// TestMachinePowerAndConsole deploys control-plane=1 worker=1 to the
// local provider (host network, simulated pods: seconds) and drives the
// machine commands as a user would: `k2 machine power pw worker-0 off`
// → `k2 status` shows it stopped at the provider (unhealthy) and the node
// goes NotReady; `on` → running and the node Ready again; `k2 machine
// console` prints its log with both boots, `-f` follows until SIGINT and
// exits 0; unknown machines and actions are usage errors naming the
// machines; a machine removed behind k2's back shows as missing while
// status still prints; `k2 destroy` deletes through the provider.
// About 75 s, most of it the node-monitor grace period before NotReady.
func TestMachinePowerAndConsole(t *testing.T) {
	home := t.TempDir()
	dir := writeFiles(t, map[string]string{"K8sfile": "FROM k2/base:v1.37\nMACHINES control-plane=1 worker=1\n"})
	mustK2(t, home, "build", "-q", "-t", "power:v1", dir)
	simEnv(t, home, "pw")
	t.Cleanup(func() { k2(t, home, "destroy", "pw", "--yes") })
	mustK2(t, home, "deploy", "power:v1", "--env", "pw")

	st := status(t, home, "pw")
	want := map[string]string{"pw-control-plane-0": "running", "pw-worker-0": "running"}
	if got := st.providerStates(); fmt.Sprint(got) != fmt.Sprint(want) || !st.Healthy || st.ProviderWarning != "" {
		t.Fatalf("status after deploy: provider states %v, healthy %v, problems %q, warning %q", got, st.Healthy, st.Problems, st.ProviderWarning)
	}
	for _, m := range st.Machines {
		if len(m.ProviderAddresses) == 0 {
			t.Errorf("machine %s: no provider addresses", m.Name)
		}
	}

	var pr struct{ Machine, Action, State string }
	power := func(action string) {
		t.Helper()
		r := mustK2(t, home, "machine", "power", "pw", "worker-0", action, "-o", "json")
		if err := json.Unmarshal([]byte(r.Stdout), &pr); err != nil {
			t.Fatalf("machine power -o json: %v\n%s", err, r.Stdout)
		}
	}
	power("off")
	if pr.Machine != "pw-worker-0" || pr.Action != "off" || pr.State != "stopped" {
		t.Errorf("power off printed %+v", pr)
	}
	st = status(t, home, "pw")
	want["pw-worker-0"] = "stopped"
	if got := st.providerStates(); fmt.Sprint(got) != fmt.Sprint(want) || st.Healthy || !strings.Contains(strings.Join(st.Problems, "\n"), "machine pw-worker-0 is stopped") {
		t.Errorf("status after power off: provider states %v, healthy %v, problems %q", got, st.Healthy, st.Problems)
	}
	off := time.Now()
	eventually(t, 100*time.Second, "the powered-off node to become NotReady", func() error {
		if status(t, home, "pw").nodeReady("pw-worker-0") {
			return fmt.Errorf("node pw-worker-0 still Ready")
		}
		return nil
	})
	t.Logf("node NotReady %s after power off", time.Since(off).Round(time.Second))

	power("on")
	if pr.State != "running" {
		t.Errorf("power on printed %+v", pr)
	}
	on := time.Now()
	eventually(t, 60*time.Second, "the node Ready again after power on", func() error {
		st := status(t, home, "pw")
		if got := st.providerStates()["pw-worker-0"]; got != "running" || !st.nodeReady("pw-worker-0") || !st.Healthy {
			return fmt.Errorf("provider state %s, node ready %v, problems %q", got, st.nodeReady("pw-worker-0"), st.Problems)
		}
		return nil
	})
	t.Logf("node Ready %s after power on", time.Since(on).Round(time.Millisecond))

	out := mustK2(t, home, "machine", "console", "pw", "worker-0").Stdout
	if n := strings.Count(out, bootLine); n != 2 {
		t.Errorf("console shows %d boots (%q), want 2 (deploy, power on):\n%s", n, bootLine, lastLines(out, 20))
	}
	checkConsoleFollow(t, home)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"machine", "power", "pw", "worker-7", "off"}, `environment pw has no machine "worker-7"; its machines: pw-control-plane-0, pw-worker-0`},
		{[]string{"machine", "power", "pw", "worker-0", "reboot"}, `power action "reboot": use on, off or reset`},
		{[]string{"machine", "console", "pw", "nope"}, `environment pw has no machine "nope"`},
		{[]string{"machine", "power", "pw", "worker-0"}, "accepts 3 arg(s)"},
	} {
		r := k2(t, home, tc.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("k2 %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(tc.args, " "), r.Code, r.Stderr, tc.want)
		}
	}

	// Behind k2's back: the worker is switched off and its machine removed
	// at the provider. Status still prints, showing it missing.
	power("off")
	if err := os.RemoveAll(filepath.Join(home, "local", "machines", "pw-worker-0")); err != nil {
		t.Fatal(err)
	}
	r := mustK2(t, home, "status", "pw")
	for _, want := range []string{"PROVIDER STATE", "machine pw-worker-0 is missing at provider local"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("status text lacks %q:\n%s", want, r.Stdout)
		}
	}
	if got := status(t, home, "pw").providerStates()["pw-worker-0"]; got != "missing" {
		t.Errorf("removed machine's provider state %q, want missing", got)
	}

	mustK2(t, home, "destroy", "pw", "--yes")
	if p := k2Procs(t, home); len(p) > 0 {
		t.Errorf("processes left after destroy:\n%s", strings.Join(p, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "local", "machines")); len(ents) > 0 {
		t.Errorf("machine dirs left after destroy: %d", len(ents))
	}
}

// bootLine is what an agent logs once each time it starts.
const bootLine = `msg="API server proxy listening"`

// checkConsoleFollow runs `k2 machine console -f`, resets the worker
// while it follows, and stops it with SIGINT: the reset's boot shows, and
// it exits 0.
func checkConsoleFollow(t *testing.T, home string) {
	t.Helper()
	cmd := exec.Command(k2Bin, "machine", "console", "pw", "worker-0", "--follow")
	cmd.Env = append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1")
	out := &testutil.SyncBuffer{}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	boots := func(n int) func() error {
		return func() error {
			if got := strings.Count(out.String(), bootLine); got < n {
				return fmt.Errorf("%d boots in the followed console, want %d", got, n)
			}
			return nil
		}
	}
	eventually(t, 30*time.Second, "console -f to print the log so far", boots(2))
	mustK2(t, home, "machine", "power", "pw", "worker-0", "reset")
	eventually(t, 30*time.Second, "console -f to print the reset's boot", boots(3))
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("console -f after SIGINT: %v (exit %d), want exit 0\n%s", err, cmd.ProcessState.ExitCode(), stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("console -f still running 20 s after SIGINT")
	}
}
