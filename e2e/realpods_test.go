package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/providers/local"
)

// requireRealPods skips unless this machine can run real pods (what
// `k2 agent --runtime auto` checks, so the test and the product agree). In
// CI (CI set) a missing piece fails the test instead: .ci/run installs
// everything, so a skip there would hide a broken install step.
func requireRealPods(t *testing.T) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if os.Geteuid() != 0 {
		skip("real pods need root")
	}
	for _, bin := range []string{"runc", "ip", "nsenter", "iptables-restore"} {
		if _, err := exec.LookPath(bin); err != nil {
			skip("%s not installed (.ci/run installs it)", bin)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		skip("CNI plugins not installed (apt-get install containernetworking-plugins)")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(k2Bin), "containerd-shim-runc-v2")); err != nil {
		skip("containerd-shim-runc-v2 not beside %s (make build)", k2Bin)
	}
}

// realPodsArtifact writes a K8sfile whose APP runs image and builds it.
func realPodsArtifact(t *testing.T, home, image, tag string, extra ...string) {
	t.Helper()
	dir := t.TempDir()
	k8sfile := fmt.Sprintf("FROM k2/base:v1.37\nAPP web image=%s port=8080 replicas=2\nMACHINES control-plane=1 worker=2\n", image)
	if err := os.WriteFile(filepath.Join(dir, "K8sfile"), []byte(k8sfile), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, append([]string{"build", "-q", "-t", tag, dir}, extra...)...)
}

// TestRealPodsLocal deploys, with the local provider, an artifact whose APP
// runs an HTTP server image the test builds and pushes to Debian's
// docker-registry on 127.0.0.1. Its pods must run on real containerd on two
// kubelet nodes (each in its own network namespace), `kubectl logs` must
// show the server's output, `kubectl exec` must work, a client pod must
// reach the server by its Service's DNS name, and `k2 destroy` must leave
// no process, mount, network namespace, bridge or cgroup behind.
func TestRealPodsLocal(t *testing.T) {
	requireRealPods(t)
	reg := startDockerRegistry(t)
	image := reg + "/web:v1"
	imagetest.Push(t, imagetest.HTTPServerImage(t), image)
	home := t.TempDir()
	realPodsArtifact(t, home, image, "realpods:v1")
	deployRealPods(t, home, "dev", "realpods:v1", image)
}

// deployRealPods deploys tag to env with the local provider, checks the
// real pods (checkRealPods), destroys the environment and checks that
// nothing is left (checkNothingLeft).
func deployRealPods(t *testing.T, home, env, tag, image string) {
	t.Helper()
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(home, "clusters", env, "cluster.json")); err == nil {
			k2(t, home, "destroy", env, "--yes")
		}
	})
	start := time.Now()
	mustK2(t, home, "deploy", tag, "--provider", "local", "--env", env)
	t.Logf("deploy to App ready: %s", time.Since(start).Round(time.Millisecond))
	checkRealPods(t, home, env, image)
	checkCleanStop(t, home, env)
	mustK2(t, home, "destroy", env, "--yes")
	checkNothingLeft(t, home, env)
}

// TestRealPodsAirgap is TestRealPodsLocal without a registry at deploy:
// the image is vendored into the artifact (k2 build --vendor-images), the
// registry is stopped, and the nodes get the image from the control plane
// when they join.
func TestRealPodsAirgap(t *testing.T) {
	requireRealPods(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	image := strings.TrimPrefix(reg.URL, "http://") + "/web:v1"
	imagetest.Push(t, imagetest.HTTPServerImage(t), image)
	home := t.TempDir()
	realPodsArtifact(t, home, image, "airgap:v1", "--vendor-images")
	reg.Close() // airgap from here on
	deployRealPods(t, home, "air", "airgap:v1", image)
}

// checkRealPods checks the running cluster: kubelet nodes, pods on
// containerd, logs, exec, Service DNS from another pod.
func checkRealPods(t *testing.T, home, env, image string) {
	t.Helper()
	nodes := kubectlEnv(t, home, env, "get", "nodes", "-l", "k2.dev/runtime=kubelet", "-o", "name")
	if n := len(strings.Fields(nodes)); n != 2 {
		t.Fatalf("%d kubelet nodes, want 2:\n%s\n%s", n, nodes, kubectlEnv(t, home, env, "get", "nodes", "-o", "wide", "--show-labels"))
	}
	var pods struct {
		Items []struct {
			Metadata struct{ Name string }
			Spec     struct{ NodeName string }
			Status   struct {
				Phase             string
				ContainerStatuses []struct{ ContainerID string }
			}
		}
	}
	if err := json.Unmarshal([]byte(kubectlEnv(t, home, env, "get", "pods", "-o", "json")), &pods); err != nil {
		t.Fatal(err)
	}
	var web []string
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Metadata.Name, "web-") {
			continue
		}
		web = append(web, p.Metadata.Name)
		if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) != 1 || !strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://") {
			t.Errorf("pod %s on %s: phase %s, containers %+v; want Running on containerd", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
		}
	}
	if len(web) != 2 {
		t.Fatalf("web pods %v, want 2\n%s", web, kubectlEnv(t, home, env, "get", "pods", "-o", "wide"))
	}
	// exec: the server answers inside its own pod.
	out := kubectlEnv(t, home, env, "exec", web[0], "--", "/httpserver", "get", "http://127.0.0.1:8080/")
	if !strings.Contains(out, "hello from "+web[0]) {
		t.Errorf("kubectl exec %s: %q", web[0], out)
	}
	// Another pod reaches the App through its Service's DNS name.
	kubectlEnv(t, home, env, "run", "client", "--image", image, "--restart=Never", "--command", "--",
		"/httpserver", "get", "http://web.default.svc.cluster.local:8080/")
	eventually(t, 60*time.Second, "the client pod to finish", func() error {
		phase := kubectlEnv(t, home, env, "get", "pod", "client", "-o", "jsonpath={.status.phase}")
		if phase == "Failed" {
			t.Fatalf("client pod failed:\n%s", kubectlEnv(t, home, env, "logs", "client"))
		}
		if phase != "Succeeded" {
			return fmt.Errorf("client pod %s", phase)
		}
		return nil
	})
	if logs := kubectlEnv(t, home, env, "logs", "client"); !strings.Contains(logs, "hello from web-") {
		t.Errorf("client pod got %q, want an answer from a web pod", logs)
	}
	// logs: the servers logged the requests above.
	var all string
	for _, p := range web {
		all += kubectlEnv(t, home, env, "logs", p)
	}
	if !strings.Contains(all, "listening on :8080") || !strings.Contains(all, "GET / from") {
		t.Errorf("kubectl logs of the web pods lack the server's output:\n%s", all)
	}
}

// checkNothingLeft checks that nothing of the local machines under home
// survives a destroy: processes, mounts, network namespaces, the bridge,
// cgroups.
func checkNothingLeft(t *testing.T, home, env string) {
	t.Helper()
	if ps := k2Procs(t, home); len(ps) > 0 {
		t.Errorf("processes left: %v", ps)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err == nil && strings.Contains(string(cmd), home) && !strings.Contains(string(st), ") Z ") {
			t.Errorf("process %s left: %s", e.Name(), strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	mi, _ := os.Open("/proc/self/mountinfo")
	sc := bufio.NewScanner(mi)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 4 && strings.HasPrefix(f[4], home) {
			t.Errorf("mount left: %s", f[4])
		}
	}
	mi.Close()
	if b, err := os.ReadFile(filepath.Join(home, "local", "network.json")); err == nil {
		t.Errorf("network record left: %s", b)
	}
	nsPrefix, bridge := local.NetworkNames(filepath.Join(home, "local"))
	netns, _ := os.ReadDir("/run/netns")
	links, _ := os.ReadDir("/sys/class/net")
	var leftovers []string
	for _, e := range append(netns, links...) {
		if strings.HasPrefix(e.Name(), nsPrefix) || e.Name() == bridge {
			leftovers = append(leftovers, e.Name())
		}
	}
	if len(leftovers) > 0 {
		t.Errorf("network namespaces or links left: %v", leftovers)
	}
	for _, ctrl := range []string{"memory", "pids", "cpu", "systemd", "unified"} {
		if ents, err := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctrl, "k2")); err == nil {
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), env+"-") {
					t.Errorf("cgroup left: /sys/fs/cgroup/%s/k2/%s", ctrl, e.Name())
				}
			}
		}
	}
}
