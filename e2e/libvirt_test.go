package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/libvirttest"
)

// lvDeploy is k2 deploy or resume running in the private libvirtd's
// network namespace, its output lines timestamped as they come.
type lvDeploy struct {
	mu    sync.Mutex
	lines []lvLine
}

type lvLine struct {
	at   time.Time
	text string
}

// first returns when a line matching re first came.
func (o *lvDeploy) first(re *regexp.Regexp) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, l := range o.lines {
		if re.MatchString(l.text) {
			return l.at, true
		}
	}
	return time.Time{}, false
}

func (o *lvDeploy) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var sb strings.Builder
	for _, l := range o.lines {
		sb.WriteString(l.text + "\n")
	}
	return sb.String()
}

// runLV runs k2 with args in d's network namespace (where the VMs'
// addresses are) and returns its exit code; kill, when it returns true for
// a line of output, SIGKILLs k2 there and then.
func runLV(t *testing.T, d *libvirttest.Daemon, home string, o *lvDeploy, kill func(string) bool, args ...string) (code int, killed bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := lvCommand(ctx, d, home, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			o.mu.Lock()
			o.lines = append(o.lines, lvLine{time.Now(), sc.Text()})
			o.mu.Unlock()
			if kill != nil && !killed && kill(sc.Text()) {
				killed = cmd.Process.Signal(syscall.SIGKILL) == nil
			}
		}
		io.Copy(io.Discard, pr)
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("k2 %v: %v", args, err)
	}
	return code, killed
}

// lvCommand is k2 with args, run in d's network namespace with home as
// K2_HOME (ip netns exec execs k2: the process is k2's).
func lvCommand(ctx context.Context, d *libvirttest.Daemon, home string, args ...string) *exec.Cmd {
	cmd := d.Command(ctx, k2Bin, args...)
	cmd.Env = append(os.Environ(), "K2_HOME="+home, "NO_COLOR=1")
	return cmd
}

// kubectlLV runs the host's kubectl in d's network namespace with env's
// admin kubeconfig.
func kubectlLV(d *libvirttest.Daemon, home, env string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kc := filepath.Join(home, "clusters", env, "admin.kubeconfig")
	out, err := d.Command(ctx, "kubectl", append([]string{"--kubeconfig", kc, "--request-timeout", "20s"}, args...)...).CombinedOutput()
	return string(out), err
}

// virshNames lists what `virsh` (an independent client) finds of a kind.
func virshNames(t *testing.T, d *libvirttest.Daemon, args ...string) []string {
	t.Helper()
	out, err := d.Virsh("qemu", args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	names := strings.Fields(out)
	sort.Strings(names)
	return names
}

// lvTimeout bounds each readiness wait of the deploy: a control plane
// under emulation on a busy 2-core machine takes minutes.
const lvTimeout = "12m"

// TestLibvirtProviderEndToEnd deploys `MACHINES control-plane=1 worker=1`
// with `--provider libvirt` to a private libvirtd (libvirttest: its own
// network and mount namespaces) whose qemu driver runs the VMs under TCG
// (domain type qemu), booting the k2 OS image `k2 os build` made of the k2
// under test, each VM given its machine config on a cidata volume. k2
// reaches the daemon as a homelab reaches its hypervisor: qemu+ssh://,
// through Debian's OpenSSH sshd (so the image volumes are uploaded and
// the consoles read over ssh). k2 and kubectl run in the daemon's network
// namespace, where sshd, the NAT network k2 made (bridge, dnsmasq) and
// every VM address live.
//
// k2 deploy is SIGKILLed while the worker VM boots; k2 resume finds the
// worker's domain by its request id (one worker VM, not two) and finishes.
// Then: both nodes Ready in kubectl, the App's pods (an image the test
// built, vendored into the artifact: the VMs reach no registry) Running
// on containerd with one on the worker VM, `k2 status` lists both machines
// with their addresses; `k2 destroy --yes` leaves no domain, volume or
// network (virsh checks). It logs power-on → node Ready per VM and the
// whole deploy time.
func TestLibvirtProviderEndToEnd(t *testing.T) {
	requireVMs(t)
	d := libvirttest.Start(t)
	home := t.TempDir()
	const env = "lv"
	cp, worker := env+"-control-plane-0", env+"-worker-0"
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(d.Dir, "lib", "images", "*console.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("== %s (tail)\n%s", filepath.Base(l), lastLines(string(b), 60))
		}
	})

	img := buildOS(t, "none")
	buildVMWebArtifact(t, home, "lv:v1")

	// unsafe: the guests' flushes (SQLite's) cost nothing on a busy host.
	// qemu's default CPU model: -cpu max once hung Debian's kernel in a
	// crypto self-test under TCG (docs/os.md).
	sshd := d.StartSSHD(t)
	cfg, _ := json.Marshal(map[string]any{"uri": sshd.URI("qemu", sshd.Addr), "image": img, "poll_interval": "500ms", "disk_cache": "unsafe"})
	cfgFile := filepath.Join(home, "libvirt.json")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, "env", "create", env, "--provider", "libvirt", "--provider-config", cfgFile)

	// Deploy; SIGKILL once the worker's domain has started (the provider
	// waits for its DHCP lease while it boots).
	var out lvDeploy
	bootRE := func(m string) *regexp.Regexp { return regexp.MustCompile(`booting ` + regexp.QuoteMeta(m) + `\b`) }
	bootingRE := regexp.MustCompile(`waiting for ` + regexp.QuoteMeta(worker) + `'s DHCP lease`)
	t0 := time.Now()
	code, killed := runLV(t, d, home, &out, bootingRE.MatchString,
		"deploy", "lv:v1", "--env", env, "--timeout", lvTimeout)
	if !killed {
		t.Fatalf("k2 deploy ended (exit %d) before it booted the worker:\n%s", code, out.String())
	}
	if doms := virshNames(t, d, "list", "--name"); len(doms) != 2 {
		t.Errorf("running domains when k2 deploy was killed: %v", doms)
	}
	code, _ = runLV(t, d, home, &out, nil, "resume", env, "--timeout", lvTimeout)
	took := time.Since(t0)
	if code != 0 {
		t.Fatalf("k2 resume: exit %d\n%s", code, out.String())
	}
	t.Logf("deploy (SIGKILLed while the worker booted) + resume: %s", took.Round(time.Second))

	if doms := virshNames(t, d, "list", "--all", "--name"); strings.Join(doms, " ") != cp+" "+worker {
		t.Errorf("domains after the resume: %v, want %s and %s", doms, cp, worker)
	}

	// Nodes: both Ready; power-on (the domain started) → Ready per VM.
	nodesJSON, err := kubectlLV(d, home, env, "get", "nodes", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl get nodes: %v\n%s", err, nodesJSON)
	}
	var nodes struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct {
					Type, Status       string
					LastTransitionTime time.Time
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(nodesJSON), &nodes); err != nil {
		t.Fatal(err)
	}
	ready := map[string]time.Time{}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready[n.Metadata.Name] = c.LastTransitionTime
			}
		}
	}
	for _, m := range []string{cp, worker} {
		at, ok := ready[m]
		if !ok {
			t.Errorf("node %s is not Ready:\n%s", m, nodesJSON)
			continue
		}
		if on, ok := out.first(bootRE(m)); ok {
			t.Logf("%s: power-on → node Ready %s (TCG)", m, at.Sub(on).Round(time.Second))
		}
	}
	if len(nodes.Items) != 2 {
		t.Errorf("%d nodes, want 2", len(nodes.Items))
	}

	// The App's pods: Running on containerd, one on the worker VM.
	podsJSON, err := kubectlLV(d, home, env, "get", "pods", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl get pods: %v\n%s", err, podsJSON)
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
	if err := json.Unmarshal([]byte(podsJSON), &pods); err != nil {
		t.Fatal(err)
	}
	onWorker, web := 0, 0
	for _, p := range pods.Items {
		if !strings.HasPrefix(p.Metadata.Name, "web-") {
			continue
		}
		web++
		if p.Status.Phase != "Running" || len(p.Status.ContainerStatuses) != 1 || !strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://") {
			t.Errorf("pod %s on %s: phase %s, containers %+v; want Running on containerd", p.Metadata.Name, p.Spec.NodeName, p.Status.Phase, p.Status.ContainerStatuses)
		}
		if p.Spec.NodeName == worker {
			onWorker++
		}
	}
	if web != 2 || onWorker == 0 {
		wide, _ := kubectlLV(d, home, env, "get", "pods", "-o", "wide")
		t.Errorf("%d web pods, %d on %s; want 2, one at least on the worker VM:\n%s", web, onWorker, worker, wide)
	}

	// k2 status: both machines, with the addresses of their DHCP leases.
	var st struct {
		Machines []struct {
			Name       string
			ProviderID string
			Addresses  []string
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stCmd := lvCommand(ctx, d, home, "status", env, "-o", "json")
	var stderr strings.Builder
	stCmd.Stderr = &stderr
	status, err := stCmd.Output()
	if err != nil {
		t.Fatalf("k2 status: %v\n%s%s", err, status, stderr.String())
	}
	if err := json.Unmarshal(status, &st); err != nil {
		t.Fatalf("k2 status -o json: %v\n%s", err, status)
	}
	leases, _ := d.Virsh("qemu", "net-dhcp-leases", "k2-"+env)
	if len(st.Machines) != 2 {
		t.Errorf("k2 status: %d machines, want 2:\n%s", len(st.Machines), status)
	}
	for _, m := range st.Machines {
		if len(m.Addresses) == 0 || !strings.Contains(leases, m.Addresses[0]+"/") || m.ProviderID == "" {
			t.Errorf("k2 status: machine %s: id %q, addresses %v; libvirt's leases:\n%s", m.Name, m.ProviderID, m.Addresses, leases)
		}
	}

	if log := sshd.Log(); !strings.Contains(log, "Accepted publickey for root") {
		t.Errorf("sshd logged no login: k2 did not reach libvirtd over ssh:\n%s", lastLines(log, 20))
	}

	// Destroy: nothing k2 made is left (virsh checks).
	if code, _ := runLV(t, d, home, &out, nil, "destroy", env, "--yes"); code != 0 {
		t.Fatalf("k2 destroy: exit %d\n%s", code, out.String())
	}
	if doms := virshNames(t, d, "list", "--all", "--name"); len(doms) != 0 {
		t.Errorf("domains after destroy: %v", doms)
	}
	if nets := virshNames(t, d, "net-list", "--all", "--name"); len(nets) != 0 {
		t.Errorf("networks after destroy: %v", nets)
	}
	if vols, err := d.Virsh("qemu", "vol-list", "default", "--details"); err != nil || strings.TrimSpace(vols) != "" {
		t.Errorf("volumes after destroy: %v\n%s", err, vols)
	}
}
