package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// deployStatus is the part of `k2 status -o json` the tests read.
type deployStatus struct {
	Healthy  bool `json:"healthy"`
	Machines []struct {
		Name       string `json:"name"`
		ProviderID string `json:"providerId"`
		Role       string `json:"role"`
		// The provider's view (machine_test.go).
		ProviderState     string   `json:"providerState"`
		ProviderAddresses []string `json:"providerAddresses"`
	} `json:"machines"`
	Nodes []struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	} `json:"nodes"`
	Apps []struct {
		Name  string `json:"name"`
		Ready bool   `json:"ready"`
	} `json:"apps"`
	Problems        []string `json:"problems"`
	ProviderWarning string   `json:"providerWarning"`
	// Failure is where the last deployment stopped (ready_test.go).
	Failure *struct {
		Step   string `json:"step"`
		Reason string `json:"reason"`
	} `json:"failure"`
}

func status(t *testing.T, home, env string) deployStatus {
	t.Helper()
	r := mustK2(t, home, "status", env, "-o", "json")
	var st deployStatus
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, r.Stdout)
	}
	return st
}

// simEnv creates env for the local provider on the host network with
// simulated pods: tests of the deploy engine stay fast and independent of
// what this host can run (real pods are TestRealPods*' business).
func simEnv(t testing.TB, home, env string) {
	t.Helper()
	cfg := filepath.Join(home, "local-sim.yaml")
	if err := os.WriteFile(cfg, []byte("network: host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, "env", "create", env, "--provider", "local", "--provider-config", cfg)
}

// kubectlEnv runs kubectl against env's cluster.
func kubectlEnv(t *testing.T, home, env string, args ...string) string {
	t.Helper()
	kc := filepath.Join(home, "clusters", env, "admin.kubeconfig")
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kc}, args...)...).Output()
	if err != nil {
		msg := ""
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			msg = string(ee.Stderr)
		}
		t.Fatalf("kubectl %v: %v\n%s", args, err, msg)
	}
	return string(out)
}

// k2Procs lists the k2 server/agent processes whose environment names home.
func k2Procs(t testing.TB, home string) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(env), "K2_HOME="+home+"\x00") {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		if strings.Contains(c, " server ") || strings.Contains(c, " agent") {
			out = append(out, e.Name()+": "+c)
		}
	}
	return out
}

// listeningPorts returns the TCP ports open in cluster.json of env.
func clusterPorts(t *testing.T, home, env string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(home, "clusters", env, "cluster.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct{ Port, JoinPort int }
	if err := json.Unmarshal(b, &id); err != nil {
		t.Fatal(err)
	}
	return []int{id.Port, id.JoinPort}
}

func portOpen(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err == nil {
		c.Close()
		return true
	}
	return false
}

// TestDeployLocalEndToEnd: build → push to Debian's docker-registry →
// k2 deploy --provider local → kubectl sees the chart's objects, the App and
// the versionless ConfigMap stored as v1 → k2 upgrade with an artifact that
// dropped a manifest prunes it → k2 destroy leaves no process, no machine
// dir and no listening port.
func TestDeployLocalEndToEnd(t *testing.T) {
	home := t.TempDir()
	reg := startDockerRegistry(t)
	ref := reg + "/e2e/hello:v1"
	mustK2(t, home, "build", "-t", ref, helloDir(t))
	pinned := strings.TrimSpace(mustK2(t, home, "push", "-q", ref).Stdout)
	mustK2(t, home, "images", "rm", ref)

	simEnv(t, home, "default")
	start := time.Now()
	mustK2(t, home, "deploy", pinned, "--provider", "local")
	t.Logf("deploy from the registry took %s", time.Since(start).Round(time.Millisecond))

	st := status(t, home, "default")
	if !st.Healthy || len(st.Machines) != 3 || len(st.Nodes) != 2 || len(st.Apps) != 1 || !st.Apps[0].Ready {
		t.Fatalf("status after deploy: %+v", st)
	}
	eventually(t, 10*time.Second, "worker nodes get the node-role label kubectl shows as ROLES", func() error {
		roles := kubectlEnv(t, home, "default", "get", "nodes", "-l", "node-role.kubernetes.io/worker", "-o", "name")
		if strings.Count(roles, "node/") != 2 {
			return fmt.Errorf("nodes with node-role.kubernetes.io/worker: %q", roles)
		}
		return nil
	})
	if got := kubectlEnv(t, home, "default", "get", "cm", "hello-config", "-o", "jsonpath={.apiVersion}"); got != "v1" {
		t.Errorf("versionless ConfigMap stored as %q, want v1", got)
	}
	objs := kubectlEnv(t, home, "default", "get", "deploy,svc,cm,apps.k2.dev", "-o", "name")
	for _, want := range []string{"service/greeter", "configmap/greeter-greeting", "deployment.apps/hello", "app.k2.dev/web", "deployment.apps/web", "service/web"} {
		if !strings.Contains(objs, want) {
			t.Errorf("kubectl does not see %s:\n%s", want, objs)
		}
	}

	// v2 drops the Deployment manifest and raises the App's replicas.
	v2 := t.TempDir()
	copyTree(t, helloDir(t), v2)
	os.Remove(filepath.Join(v2, "manifests", "deployment.yaml"))
	k8sfile := filepath.Join(v2, "K8sfile")
	b, _ := os.ReadFile(k8sfile)
	os.WriteFile(k8sfile, []byte(strings.Replace(string(b), "ARG replicas=2", "ARG replicas=3", 1)), 0o644)
	mustK2(t, home, "build", "-t", reg+"/e2e/hello:v2", v2)
	mustK2(t, home, "upgrade", "default", reg+"/e2e/hello:v2")
	objs = kubectlEnv(t, home, "default", "get", "deploy", "-o", "name")
	if strings.Contains(objs, "deployment.apps/hello") {
		t.Errorf("upgrade did not prune the dropped Deployment:\n%s", objs)
	}
	if got := kubectlEnv(t, home, "default", "get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"); got != "3" {
		t.Errorf("App web replicas after upgrade = %s, want 3", got)
	}

	ports := clusterPorts(t, home, "default")
	mustK2(t, home, "destroy", "default", "--yes")
	if p := k2Procs(t, home); len(p) > 0 {
		t.Errorf("processes left after destroy:\n%s", strings.Join(p, "\n"))
	}
	if ents, _ := os.ReadDir(filepath.Join(home, "local", "machines")); len(ents) > 0 {
		t.Errorf("machine dirs left after destroy: %d", len(ents))
	}
	for _, p := range ports {
		if portOpen(p) {
			t.Errorf("port %d still listening after destroy", p)
		}
	}
	h := mustK2(t, home, "history", "default", "-o", "json").Stdout
	for _, op := range []string{`"deploy"`, `"upgrade"`, `"destroy"`} {
		if !strings.Contains(h, op) {
			t.Errorf("history lacks %s:\n%s", op, h)
		}
	}
}

// TestDeployKilledAtEachStep SIGKILLs `k2 deploy` as each journaled step
// starts, runs `k2 deploy` again, and checks that it completes with exactly
// the planned machines (no duplicates at the provider) and a healthy cluster.
func TestDeployKilledAtEachStep(t *testing.T) {
	home := t.TempDir()
	mustK2(t, home, "build", "-t", "hello:v1", helloDir(t))
	for _, step := range []string{"plan", "identity", "control-plane", "control-plane-ready", "images", "workers", "nodes-ready", "layers"} {
		t.Run(step, func(t *testing.T) {
			env := "kill-" + step
			simEnv(t, home, env)
			killed := deployAndKillAt(t, home, env, step)
			if !killed {
				t.Fatalf("k2 deploy ended before step %s started, so it was never killed there:\n%s", step, machineLogs(home, env))
			}
			if r := k2(t, home, "deploy", "hello:v1", "--provider", "local", "--env", env); r.Code != 0 {
				t.Fatalf("deploy after the kill: exit %d\n%s\nmachine logs:\n%s", r.Code, r.Stderr, machineLogs(home, env))
			}
			st := status(t, home, env)
			if !st.Healthy {
				t.Errorf("after resume: unhealthy: %v", st.Problems)
			}
			ids := map[string]bool{}
			for _, m := range st.Machines {
				ids[m.ProviderID] = true
			}
			if len(st.Machines) != 3 || len(ids) != 3 {
				t.Errorf("machines after resume: %+v", st.Machines)
			}
			ents, _ := os.ReadDir(filepath.Join(home, "local", "machines"))
			n := 0
			for _, e := range ents {
				if strings.Contains(e.Name(), env+"-") {
					n++
				}
			}
			if n != 3 {
				t.Errorf("provider has %d machine dirs for %s, want 3", n, env)
			}
			mustK2(t, home, "destroy", env, "--yes")
		})
	}
}

// deployAndKillAt starts a deploy and SIGKILLs it when step starts. It
// reports whether the kill happened before the deploy finished.
func deployAndKillAt(t *testing.T, home, env, step string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, k2Bin, "deploy", "hello:v1", "--provider", "local", "--env", env)
	cmd.Env = append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1")
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marker := "] " + step + ": started"
	sc := bufio.NewScanner(stderr)
	killed := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), marker) {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
			break
		}
	}
	go io.Copy(io.Discard, stderr)
	cmd.Wait()
	return killed
}

// machineLogs returns the tail of each local machine's log of env.
func machineLogs(home, env string) string {
	var sb strings.Builder
	ents, _ := os.ReadDir(filepath.Join(home, "local", "machines"))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), env+"-") {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(home, "local", "machines", e.Name(), "agent.log"))
		if len(b) > 2000 {
			b = b[len(b)-2000:]
		}
		fmt.Fprintf(&sb, "== %s\n%s\n", e.Name(), b)
	}
	return sb.String()
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, info.Mode())
	})
	if err != nil {
		t.Fatal(err)
	}
}
