package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/testutil"
)

// readyChart is a chart of one Deployment running .Values.image; pull
// policy Always, so that a fixed image pushed under the same tag is what a
// new pod runs.
func readyChart(name, image string) map[string]string {
	return map[string]string{
		"charts/" + name + "/Chart.yaml":  "apiVersion: v2\nname: " + name + "\nversion: 0.1.0\n",
		"charts/" + name + "/values.yaml": "image: " + image + "\n",
		"charts/" + name + "/templates/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
      - name: main
        image: {{ .Values.image }}
        imagePullPolicy: Always
`,
	}
}

// exitImage is img running "httpserver get http://127.0.0.1:1/": it exits
// at once, its last log line saying the connection was refused.
func exitImage(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Cmd = []string{"get", "http://127.0.0.1:1/"}
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeployFailsFastAndResumes is what a new user hits first, on real
// kubelet nodes and one cluster: an artifact whose chart and App name an
// image on a loopback registry address where nothing listens yet. The
// deploy must fail well before the 5-minute layer timeout, naming the pod,
// the image and the reason; k2 status must show where it stopped, why, and
// the ways on; once the image is pushed to that registry, k2 resume must
// finish. Then the same for a container that exits at once
// (CrashLoopBackOff after its third restart, with its last log line), added
// by an upgrade, fixed by pushing a working image under the same tag.
func TestDeployFailsFastAndResumes(t *testing.T) {
	requireRealPods(t)
	reg := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t)) // nothing listens here yet
	image, crash := reg+"/hello:1.0", reg+"/crash:1.0"
	web := imagetest.HTTPServerImage(t)
	files := readyChart("hello", image)
	for k, v := range readyChart("crash", crash) {
		files[k] = v
	}
	v1 := "FROM k2/base:v1.37\nADD ./charts/hello\nAPP web image=" + image + " port=8080\nMACHINES control-plane=1 worker=1\n"
	files["K8sfile"] = v1
	files["K8sfile.v2"] = v1 + "ADD ./charts/crash\n"
	dir := writeFiles(t, files)
	home := t.TempDir()
	mustK2(t, home, "build", "-q", "-t", "ready:v1", dir)
	mustK2(t, home, "build", "-q", "-t", "ready:v2", "-f", filepath.Join(dir, "K8sfile.v2"), dir)
	const env = "ready"
	t.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(home, "clusters", env, "cluster.json")); err == nil {
			k2(t, home, "destroy", env, "--yes")
		}
	})

	// 1. The image cannot be pulled: the deploy fails fast and says why.
	start := time.Now()
	// A pull grace of 15 s rather than the default minute keeps the test
	// inside its CI budget (with the default it fails after ~90 s).
	r := k2(t, home, "deploy", "ready:v1", "--provider", "local", "--env", env, "--pull-grace", "15s")
	took := time.Since(start)
	t.Logf("deploy failed after %s:\n%s", took.Round(time.Millisecond), r.Stderr)
	if r.Code != 1 {
		t.Fatalf("deploy: exit %d, want 1\n%s", r.Code, r.Stderr)
	}
	if took > 2*time.Minute {
		t.Errorf("deploy took %s to fail; want under 2 minutes", took)
	}
	errLine := lastLines(r.Stderr, 1)
	for _, want := range []string{"layer/hello", "Deployment default/hello will not become ready", "pod hello-", "image " + image,
		"nothing listens on " + reg, "k2 build --vendor-images", "k2 resume " + env} {
		if !strings.Contains(errLine, want) {
			t.Errorf("deploy error lacks %q:\n%s", want, errLine)
		}
	}
	if !regexp.MustCompile(`(ErrImagePull|ImagePullBackOff) for (1\d|2\d)s`).MatchString(errLine) {
		t.Errorf("deploy error names no pull failure:\n%s", errLine)
	}
	if !regexp.MustCompile(`layer hello: 0 of 1 objects ready — Deployment default/hello: 0/1 pods ready; pod hello-\S+: (ErrImagePull|ImagePullBackOff): ` + regexp.QuoteMeta(image) + `: `).MatchString(r.Stderr) {
		t.Errorf("no progress line saying what is not ready and why:\n%s", r.Stderr)
	}
	// The waits before the layers say what they wait for, too.
	for _, re := range []string{
		`control-plane-ready: control plane at https://\S+: (not answering yet \(|starting \()`,
		`nodes-ready: 0 of 1 nodes ready — ready-worker-0: (no node yet \(its agent has not joined\)|NotReady: |registered, no status yet)`,
	} {
		if !regexp.MustCompile(re).MatchString(r.Stderr) {
			t.Errorf("no progress line matching %s:\n%s", re, r.Stderr)
		}
	}
	checkStopped(t, home, env, "layer/hello", image, "ImagePull")

	// 2. Make the image available where the artifact names it; resume.
	startDockerRegistryAt(t, reg)
	imagetest.Push(t, web, image)
	start = time.Now()
	r = mustK2(t, home, "resume", env)
	t.Logf("resume finished in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.Stderr, "restarting pod hello-") {
		t.Errorf("resume did not restart the backed-off pod:\n%s", r.Stderr)
	}
	if st := status(t, home, env); !st.Healthy {
		t.Errorf("after resume: not healthy: %+v", st)
	}

	// 3. A container that exits at once, added by an upgrade.
	imagetest.Push(t, exitImage(t, web), crash)
	start = time.Now()
	r = k2(t, home, "upgrade", env, "ready:v2")
	took = time.Since(start)
	t.Logf("upgrade failed after %s:\n%s", took.Round(time.Millisecond), r.Stderr)
	if r.Code != 1 {
		t.Fatalf("upgrade: exit %d, want 1\n%s", r.Code, r.Stderr)
	}
	if took > 2*time.Minute {
		t.Errorf("upgrade took %s to fail; want under 2 minutes", took)
	}
	for _, want := range []string{"layer/crash", "Deployment default/crash will not become ready", "pod crash-", "image " + crash,
		"CrashLoopBackOff after 3 restarts, last exit code 1: ", "its last log lines:", "| Get \"http://127.0.0.1:1/\"",
		"connection refused", "k2 resume " + env} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("upgrade error lacks %q:\n%s", want, lastLines(r.Stderr, 8))
		}
	}
	checkStopped(t, home, env, "layer/crash", crash, "CrashLoopBackOff")

	// 4. Push a working image under the same tag; resume.
	imagetest.Push(t, web, crash)
	start = time.Now()
	mustK2(t, home, "resume", env)
	t.Logf("resume finished in %s", time.Since(start).Round(time.Millisecond))
	if st := status(t, home, env); !st.Healthy {
		t.Errorf("after the second resume: not healthy: %+v", st)
	}
	mustK2(t, home, "destroy", env, "--yes")
}

// checkStopped checks that k2 status (text and JSON) shows where the last
// deployment stopped, the reason and the ways on.
func checkStopped(t *testing.T, home, env, item, image, reason string) {
	t.Helper()
	text := mustK2(t, home, "status", env).Stdout
	for _, want := range []string{"Stopped at:\tlayers, " + item, "Reason:", image, reason,
		"'k2 resume " + env + "'", "'k2 destroy " + env + "'"} {
		if !strings.Contains(text, want) {
			t.Errorf("k2 status lacks %q:\n%s", want, text)
		}
	}
	var st struct {
		Healthy bool
		Failure struct {
			Step, Item, Reason string
			Next               []string
		}
	}
	if err := json.Unmarshal([]byte(mustK2(t, home, "status", env, "-o", "json").Stdout), &st); err != nil {
		t.Fatal(err)
	}
	f := st.Failure
	if st.Healthy || f.Step != "layers" || f.Item != item || !strings.Contains(f.Reason, image) || !strings.Contains(f.Reason, reason) ||
		strings.Join(f.Next, ",") != "k2 resume "+env+",k2 destroy "+env {
		t.Errorf("k2 status -o json: %+v", st)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestDeployFailedMachine: a worker whose agent exits fails the deploy at
// once, not at the end of the node wait, and the deploy's output says why
// from the machine's own log. The agent here is a k2 copied alone into a
// directory, without the runc shim beside it (a real install mistake): the
// kubelet runtime refuses to start. With the shim put beside it, `k2
// machine power ... reset` restarts the machine and `k2 resume` finishes.
func TestDeployFailedMachine(t *testing.T) {
	requireRealPods(t)
	if p, err := exec.LookPath("containerd-shim-runc-v2"); err == nil {
		t.Skipf("the runc shim is on PATH (%s): the agent would find it", p)
	}
	bin := filepath.Join(t.TempDir(), "k2")
	copyExecutable(t, k2Bin, bin)
	home := t.TempDir()
	cfg := filepath.Join(home, "local.yaml")
	if err := os.WriteFile(cfg, []byte("network: netns\nruntime: kubelet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := writeFiles(t, map[string]string{"K8sfile": "FROM k2/base:v1.37\nMACHINES control-plane=1 worker=1\n"})
	mustK2(t, home, "build", "-q", "-t", "fail:v1", dir)
	mustK2(t, home, "env", "create", "fail", "--provider", "local", "--provider-config", cfg)
	t.Cleanup(func() { k2(t, home, "destroy", "fail", "--yes") })

	start := time.Now()
	r := k2At(t, bin, home, "deploy", "fail:v1", "--env", "fail", "--timeout", "5m")
	took := time.Since(start)
	t.Logf("deploy failed after %s:\n%s", took.Round(time.Millisecond), r.Stderr)
	if r.Code != 1 {
		t.Fatalf("deploy: exit %d, want 1\n%s", r.Code, r.Stderr)
	}
	// The wait would last 5 minutes; the provider's answer ends it.
	if took > 2*time.Minute {
		t.Errorf("deploy took %s to fail; want it to stop soon after the agent exited", took)
	}
	// The error (the output's end, and the journal's) gives the agent's
	// own reason and the lines of its log before it, then what to do.
	errOut := r.Stderr[strings.LastIndex(r.Stderr, "\nk2: nodes-ready:")+1:]
	for _, want := range []string{
		"k2: nodes-ready: waiting for 1 Ready node: machine fail-worker-0 failed (provider local): process exited: " +
			"k2: the kubelet runtime cannot run here: - containerd-shim-runc-v2 not found beside " + bin,
		"so its node will not join\n  fail-worker-0: provider local reports it failed; its console's last lines:\n    | ",
		"\n    | k2: the kubelet runtime cannot run here:\n",
		"\n  what to do: fix what its log says ('k2 machine console fail fail-worker-0' shows all of it), then 'k2 machine power fail fail-worker-0 reset' restarts the machine",
		"run 'k2 resume fail'",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("deploy error lacks %q:\n%s", want, errOut)
		}
	}
	if st := status(t, home, "fail"); st.Failure == nil || !strings.Contains(st.Failure.Reason, "    | k2: the kubelet runtime cannot run here:") {
		t.Errorf("k2 status does not show the machine's log lines: %+v", st.Failure)
	}

	copyExecutable(t, filepath.Join(filepath.Dir(k2Bin), "containerd-shim-runc-v2"), filepath.Join(filepath.Dir(bin), "containerd-shim-runc-v2"))
	mustK2(t, home, "machine", "power", "fail", "worker-0", "reset")
	start = time.Now()
	mustK2(t, home, "resume", "fail")
	t.Logf("resume finished in %s", time.Since(start).Round(time.Millisecond))
	if st := status(t, home, "fail"); !st.nodeReady("fail-worker-0") || !st.Healthy {
		t.Errorf("after resume: node ready %v, healthy %v, problems %q", st.nodeReady("fail-worker-0"), st.Healthy, st.Problems)
	}

	// An agent that dies (the kubelet exits on some start-up failures,
	// leaving the restart to a babysitter) is restarted by its machine's
	// supervisor; it reuses its credentials and its node is Ready again.
	machine := filepath.Join(home, "local", "machines", "fail-worker-0")
	readyLines := func() int {
		log, _ := os.ReadFile(filepath.Join(machine, "agent.log"))
		return strings.Count(string(log), `msg="node ready"`)
	}
	before := readyLines()
	agentPid := machineChild(t, machine)
	if err := syscall.Kill(agentPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 2*time.Minute, "the killed agent restarted and its node Ready", func() error {
		if n := readyLines(); n <= before {
			return fmt.Errorf("%d \"node ready\" lines in the agent's log, as before the kill", n)
		}
		return nil
	})
	t.Logf("agent back and node ready %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
	log, _ := os.ReadFile(filepath.Join(machine, "agent.log"))
	if !strings.Contains(string(log), "k2 supervise: k2 agent was killed by signal 9 (killed)") || !strings.Contains(string(log), "using existing node credentials") {
		t.Errorf("the agent's log does not show the restart:\n%s", lastLines(string(log), 30))
	}
	if st := status(t, home, "fail"); !st.nodeReady("fail-worker-0") || !st.Healthy {
		t.Errorf("after the agent's restart: node ready %v, healthy %v, problems %q", st.nodeReady("fail-worker-0"), st.Healthy, st.Problems)
	}
	mustK2(t, home, "destroy", "fail", "--yes")
	checkNothingLeft(t, home, "fail")
}

// copyExecutable copies the file at src to dst, mode 0755.
func copyExecutable(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
