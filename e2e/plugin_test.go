package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
)

// k2Env runs the binary like k2 but with extra environment variables.
func k2Env(t *testing.T, home string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k2Bin, args...)
	cmd.Env = append(append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1"), env...)
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

// pluginDir builds the example plugin as k2-provider-example and adds a
// k2-provider-broken that dies at start.
func pluginDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "k2-provider-example"), "../examples/provider-example")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the example plugin: %v\n%s", err, out)
	}
	broken := "#!/bin/sh\necho 'broken plugin: missing credentials file' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "k2-provider-broken"), []byte(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPluginLs(t *testing.T) {
	home := t.TempDir()
	env := []string{"K2_PLUGIN_PATH=" + pluginDir(t)}
	r := k2Env(t, home, env, "plugin", "ls", "-o", "json")
	if r.Code != 0 {
		t.Fatalf("plugin ls: exit %d\n%s", r.Code, r.Stderr)
	}
	var infos []host.Info
	if err := json.Unmarshal([]byte(r.Stdout), &infos); err != nil {
		t.Fatalf("plugin ls -o json: %v\n%s", err, r.Stdout)
	}
	got := map[string]host.Info{}
	for _, i := range infos {
		got[i.Name] = i
	}
	if ex := got["example"]; ex.Builtin || ex.Capabilities == nil || strings.Join(ex.Capabilities.Architectures, ",") != "amd64,arm64" || !ex.Capabilities.Power {
		t.Errorf("example: %+v", ex)
	}
	if l := got["local"]; !l.Builtin || l.Capabilities == nil || l.Capabilities.BootstrapMethods[0] != sdk.BootstrapExec || l.Path != k2Bin {
		t.Errorf("local: %+v", l)
	}
	if b := got["broken"]; b.Error == "" || !strings.Contains(b.Error, `provider "broken"`) {
		t.Errorf("broken: %+v", b)
	}
	// Its stderr is relayed into k2's log with provider=broken.
	if !strings.Contains(r.Stderr, "provider=broken") || !strings.Contains(r.Stderr, "missing credentials file") {
		t.Errorf("the broken plugin's stderr is not in k2's log:\n%s", r.Stderr)
	}

	r = k2Env(t, home, env, "plugin", "ls")
	if r.Code != 0 || !regexp.MustCompile(`(?m)^example\s+external\s+amd64,arm64\s+user-data`).MatchString(r.Stdout) {
		t.Errorf("plugin ls text (exit %d):\n%s", r.Code, r.Stdout)
	}
	r = k2Env(t, home, env, "plugin", "describe", "example")
	if r.Code != 0 || !strings.Contains(r.Stdout, "stateDir") || !strings.Contains(r.Stdout, "(required)") {
		t.Errorf("plugin describe example (exit %d):\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	r = k2Env(t, home, env, "plugin", "describe", "nope")
	if r.Code != 4 || !strings.Contains(r.Stderr, `provider "nope" not found`) {
		t.Errorf("plugin describe nope: exit %d\n%s", r.Code, r.Stderr)
	}
	// A plugin in $K2_HOME/plugins is found too.
	os.MkdirAll(filepath.Join(home, "plugins"), 0o755)
	os.Rename(filepath.Join(strings.TrimPrefix(env[0], "K2_PLUGIN_PATH="), "k2-provider-example"), filepath.Join(home, "plugins", "k2-provider-example"))
	r = k2(t, home, "plugin", "ls", "-o", "json")
	if r.Code != 0 || !strings.Contains(r.Stdout, filepath.Join(home, "plugins", "k2-provider-example")) {
		t.Errorf("plugin in $K2_HOME/plugins not listed (exit %d):\n%s", r.Code, r.Stdout)
	}
}

var joinAddrRE = regexp.MustCompile(`join endpoint ready"? .*?addr=(\S+)`)

// joinURL is the join endpoint the server logged.
func (s *server) joinURL(t *testing.T) string {
	t.Helper()
	var m []string
	eventually(t, 30*time.Second, "join endpoint ready", func() error {
		if m = joinAddrRE.FindStringSubmatch(s.log.String()); m == nil {
			return fmt.Errorf("no 'join endpoint ready' in the server log")
		}
		return nil
	})
	return "https://" + m[1]
}

// agentProc is a `k2 agent` process.
type agentProc struct {
	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
	err  error
}

func startAgent(t *testing.T, home string, args ...string) *agentProc {
	t.Helper()
	a := &agentProc{log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	// Several agents on this host's network: simulated pods (real nodes
	// on one network would clash; the local provider's namespaces are how
	// they share a host).
	a.cmd = exec.Command(k2Bin, append([]string{"agent", "--runtime", "sim"}, args...)...)
	a.cmd.Env = append(os.Environ(), "K2_HOME="+home)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.err = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.done
		if t.Failed() {
			t.Logf("k2 agent %v log:\n%s", args, a.log.String())
		}
	})
	return a
}

// TestAgentsJoinServer: k2 server → k2 token create → two k2 agent
// processes → nodes Ready → a Deployment's pods Running → SIGTERM.
func TestAgentsJoinServer(t *testing.T) {
	home := t.TempDir()
	s := startServer(t, filepath.Join(home, "server"))
	joinURL := s.joinURL(t)
	tok := strings.TrimSpace(mustK2(t, home, "token", "create", "--data-dir", s.DataDir).Stdout)
	server := fmt.Sprintf("https://127.0.0.1:%d", s.Port)
	var agents []*agentProc
	for _, n := range []string{"e2e-node-1", "e2e-node-2"} {
		agents = append(agents, startAgent(t, home, "--server", server, "--join-url", joinURL, "--token", tok,
			"--node-name", n, "--data-dir", filepath.Join(home, n), "--cpu", "2", "--memory", "4Gi", "--labels", "k2.dev/pool=e2e"))
	}
	eventually(t, 2*time.Minute, "two nodes Ready", func() error {
		out, err := s.kubectl("get", "nodes", "-l", "k2.dev/runtime=sim,k2.dev/pool=e2e",
			"-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return err
		}
		if strings.Count(out, "=True") != 2 {
			for _, a := range agents {
				select {
				case <-a.done:
					return fmt.Errorf("an agent exited: %w\n%s", a.err, a.log.String())
				default:
				}
			}
			return fmt.Errorf("nodes: %q", out)
		}
		return nil
	})
	t.Log(s.mustKubectl("get", "nodes", "-L", "k2.dev/runtime,k2.dev/pool"))

	s.mustKubectl("create", "deployment", "web", "--image", "nginx:1.27", "--replicas", "3")
	eventually(t, 2*time.Minute, "3 pods Running and Ready", func() error {
		out, err := s.kubectl("get", "pods", "-l", "app=web",
			"-o", `jsonpath={range .items[*]}{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}/{.status.podIP} {end}`)
		if err != nil {
			return err
		}
		if strings.Count(out, "Running/True/10.") != 3 {
			return fmt.Errorf("pods: %q", out)
		}
		return nil
	})
	t.Log(s.mustKubectl("get", "pods", "-o", "wide"))
	if out := s.mustKubectl("logs", "deploy/web"); !strings.Contains(out, "k2 sim runtime") {
		t.Errorf("kubectl logs: %q", out)
	}
	if out, err := s.kubectl("exec", "deploy/web", "--", "true"); err == nil || !strings.Contains(err.Error(), "runtime cannot exec") {
		t.Errorf("kubectl exec on a sim pod: %q %v", out, err)
	}
	cs := s.Client()
	leases, err := cs.CoordinationV1().Leases("kube-node-lease").List(context.Background(), metav1.ListOptions{})
	if err != nil || len(leases.Items) < 2 {
		t.Errorf("node leases: %v %v", leases, err)
	}

	// A restarted agent reuses its credentials; SIGTERM stops it cleanly.
	for _, a := range agents {
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
			if a.err != nil {
				t.Errorf("agent exit after SIGTERM: %v\n%s", a.err, a.log.String())
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent did not stop within 30s of SIGTERM")
		}
	}
	again := startAgent(t, home, "--server", server, "--join-url", joinURL, "--token", tok,
		"--node-name", "e2e-node-1", "--data-dir", filepath.Join(home, "e2e-node-1"))
	eventually(t, time.Minute, "restarted agent reusing its credentials", func() error {
		if !strings.Contains(again.log.String(), "using existing node credentials") || !strings.Contains(again.log.String(), "node ready") {
			return fmt.Errorf("log:\n%s", again.log.String())
		}
		return nil
	})
}

// TestLocalProviderAgainstServer: the built-in local provider, launched as
// k2 launches it, brings three agent processes into a k2 server.
func TestLocalProviderAgainstServer(t *testing.T) {
	home := t.TempDir()
	s := startServer(t, filepath.Join(home, "server"))
	joinURL := s.joinURL(t)
	tok := strings.TrimSpace(mustK2(t, home, "token", "create", "--data-dir", s.DataDir).Stdout)
	ctx := context.Background()
	p, err := host.Launch(ctx, host.Plugin{Name: "local", Path: k2Bin, Builtin: true}, host.LaunchOptions{Env: []string{"K2_HOME=" + home}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Default state dir ($K2_HOME/local); host network, as the server
	// listens on 127.0.0.1.
	cfg := sdk.Config(`{"network": "host"}`)
	t.Cleanup(func() { deleteAllLocal(t, home, cfg) })
	t0 := time.Now()
	resp, err := p.Create(ctx, &sdk.CreateRequest{
		RequestID: "e2e", Config: cfg,
		Machines: []sdk.MachineRequest{{Name: "lp-1", Pool: "workers"}, {Name: "lp-2", Pool: "workers"}, {Name: "lp-3", Pool: "workers"}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{k2Bin, "agent", "--join-url", joinURL},
			ServerURL: fmt.Sprintf("https://127.0.0.1:%d", s.Port), JoinToken: tok},
	})
	if err != nil || resp.Diagnostics.HasErrors() {
		t.Fatalf("Create: %v %v", err, resp.Diagnostics.Err())
	}
	cs := s.Client()
	eventually(t, 2*time.Minute, "3 local nodes Ready", func() error {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: "k2.dev/pool=workers"})
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d of 3 Ready", ready)
		}
		return nil
	})
	t.Logf("local: 3 agents Ready %s after Create", time.Since(t0).Round(time.Millisecond))
	if _, err := os.Stat(filepath.Join(home, "local", "machines", "lp-1", "data", "kubeconfig")); err != nil {
		t.Errorf("agent data dir: %v", err)
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, "lp-2", metav1.GetOptions{})
	if err != nil || node.Labels["k2.dev/runtime"] != "sim" || node.Status.Capacity.Memory().Value() != 4<<30 {
		t.Errorf("node lp-2: labels %v capacity %v (%v)", node.Labels, node.Status.Capacity, err)
	}

	// The agents outlive the plugin process: a new one lists them running.
	p.Close()
	time.Sleep(500 * time.Millisecond)
	p, err = host.Launch(ctx, host.Plugin{Name: "local", Path: k2Bin, Builtin: true}, host.LaunchOptions{Env: []string{"K2_HOME=" + home}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if err != nil || len(l.Machines) != 3 {
		t.Fatalf("List after the plugin exited: %v %v", l, err)
	}
	for _, m := range l.Machines {
		if m.State != sdk.StateRunning {
			t.Errorf("machine %s is %s after the plugin exited: %s", m.Name, m.State, m.Message)
		}
	}
	del, err := p.Delete(ctx, &sdk.DeleteRequest{RequestID: "e2e-delete", Config: cfg, MachineIDs: []string{"local-lp-1", "local-lp-2", "local-lp-3"}})
	if err != nil || len(del.Deleted) != 3 {
		t.Fatalf("Delete: %v %v", del, err)
	}
	if _, err := os.Stat(filepath.Join(home, "local", "machines", "lp-1")); !os.IsNotExist(err) {
		t.Errorf("machine dir left after Delete: %v", err)
	}
	if l, _ := p.List(ctx, &sdk.ListRequest{Config: cfg}); len(l.Machines) != 0 {
		t.Errorf("List after Delete: %v", l.Machines)
	}
}

// deleteAllLocal removes every machine of the local provider under home, so
// that a failed test leaves no agent process behind.
func deleteAllLocal(t *testing.T, home string, cfg sdk.Config) {
	ctx := context.Background()
	p, err := host.Launch(ctx, host.Plugin{Name: "local", Path: k2Bin, Builtin: true}, host.LaunchOptions{Env: []string{"K2_HOME=" + home}})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer p.Close()
	l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	var ids []string
	for _, m := range l.Machines {
		ids = append(ids, m.ID)
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(home, "local", "machines", m.Name, "agent.log"))
			t.Logf("machine %s (%s: %s) agent.log:\n%s", m.Name, m.State, m.Message, b)
		}
	}
	if len(ids) > 0 {
		if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

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

// TestLocalKillPluginMidCreate kills the built-in local plugin (k2 plugin
// serve local, as k2 runs it) while Create is starting machines: k2 must
// name the plugin, and the retried Create must leave exactly one process
// per machine.
func TestLocalKillPluginMidCreate(t *testing.T) {
	bin := k2Bin
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
	t.Cleanup(func() {
		var ids []string
		for _, m := range ms {
			ids = append(ids, "local-"+m.Name)
		}
		if _, err := p2.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids}); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		p2.Close()
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
