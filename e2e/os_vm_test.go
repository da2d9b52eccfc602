package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/ociarchive"
)

const (
	cpMAC, workerMAC = "52:54:00:78:00:10", "52:54:00:78:00:11"
	cpIP, workerIP   = labSubnet + ".10", labSubnet + ".11"
	podImage         = "k2.test/web:v1"
)

// osCluster is a two-VM k2 OS cluster in a lab network: the control plane
// and a worker, each with a cidata volume and a data disk.
type osCluster struct {
	t          testing.TB
	l          *lab
	image      osImage
	imageDir   string
	configs    string // k2 os config gen's directory
	cp, worker *vm
	kubeconfig string // the admin kubeconfig, dialing the forwarded API
	joinURL    string // the join endpoint, forwarded
}

func newOSCluster(t testing.TB, compress string) *osCluster {
	t.Helper()
	c := &osCluster{t: t, l: newLab(t)}
	c.imageDir = buildOS(t, compress, "--format", "raw", "--cmdline", vmCmdline)
	c.image = readOSImage(t, c.imageDir)
	c.configs = t.TempDir()
	mustK2(t, t.TempDir(), "os", "config", "gen", "--dir", c.configs, "--server-address", cpIP, "--workers", "1", "--data-disk", "auto")
	c.l.startDHCP(t, map[string]string{cpMAC: cpIP, workerMAC: workerIP})
	kernel := filepath.Join(c.imageDir, c.image.Kernel.File)
	initrd := filepath.Join(c.imageDir, c.image.Initramfs.File)
	// The control plane boots the kernel directly (as libvirt and network
	// boot do); the worker boots disk.raw with UEFI firmware (a cloud
	// image, a disk written with dd).
	c.cp = c.l.newVM(t, "control-plane", cpMAC, kernel, initrd, vmCmdline,
		cidataImage(t, filepath.Join(c.configs, "control-plane.yaml"), "control-plane"), emptyDisk(t, 4<<30))
	c.worker = c.l.newVM(t, "worker-1", workerMAC, "", "", "",
		filepath.Join(c.imageDir, c.image.Disk.File),
		cidataImage(t, filepath.Join(c.configs, "worker-1.yaml"), "worker-1"), emptyDisk(t, 4<<30))
	c.worker.uefi = true
	// The host's kubectl reaches the API through a loopback port; the
	// kubeconfig verifies the server as "kubernetes" (docs/os.md).
	api := c.l.forward(t, cpIP+":6443")
	c.joinURL = "https://" + c.l.forward(t, cpIP+":6444")
	kc, err := clientcmd.LoadFromFile(filepath.Join(c.configs, "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range kc.Clusters {
		cl.Server = "https://" + api
	}
	c.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, c.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *osCluster) kubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", c.kubeconfig, "--request-timeout", "20s"}, args...)...).CombinedOutput()
	return string(out), err
}

// waitAPI waits until the API answers /readyz and returns how long after
// the control plane's power-on.
func (c *osCluster) waitAPI(d time.Duration) time.Duration {
	c.t.Helper()
	eventually(c.t, d, "the API server's /readyz", func() error {
		out, err := c.kubectl("get", "--raw", "/readyz")
		return kubectlWant(err, out, strings.TrimSpace(out) == "ok")
	})
	return time.Since(c.cp.started)
}

// kubectlWant is nil when kubectl succeeded and its output is as wanted.
func kubectlWant(err error, out string, ok bool) error {
	switch {
	case err != nil:
		return fmt.Errorf("%w: %s", err, out)
	case !ok:
		return fmt.Errorf("not yet: %s", out)
	}
	return nil
}

// waitNodesReady waits until the nodes named are Ready.
func (c *osCluster) waitNodesReady(d time.Duration, names ...string) {
	c.t.Helper()
	eventually(c.t, d, strings.Join(names, " and ")+" Ready", func() error {
		out, err := c.kubectl("get", "nodes", "--no-headers")
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		for _, n := range names {
			ready := false
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) > 1 && f[0] == n && f[1] == "Ready" {
					ready = true
				}
			}
			if !ready {
				return fmt.Errorf("%s not Ready:\n%s", n, out)
			}
		}
		return nil
	})
}

// uploadPodImage builds the test HTTP server image and hands it to the
// control plane as a vendored image (as k2 deploy does for an artifact
// built with --vendor-images): nodes import it when they join, so the
// VMs need no registry.
func (c *osCluster) uploadPodImage() {
	c.t.Helper()
	var buf bytes.Buffer
	if err := ociarchive.Write(&buf, []ociarchive.Named{{Ref: podImage, Image: imagetest.HTTPServerImage(c.t)}}); err != nil {
		c.t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	pki := filepath.Join(c.configs, "cluster", "pki")
	caPEM, err := os.ReadFile(filepath.Join(pki, "ca.crt"))
	if err != nil {
		c.t.Fatal(err)
	}
	admin, err := tls.LoadX509KeyPair(filepath.Join(pki, "admin.crt"), filepath.Join(pki, "admin.key"))
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := join.UploadImage(ctx, c.joinURL, caPEM, admin, podImage, "sha256:"+hex.EncodeToString(sum[:]), int64(buf.Len()), &buf); err != nil {
		c.t.Fatal(err)
	}
}

// TestOSClusterOnVMs boots k2 OS with the real Debian kernel in qemu (TCG)
// twice: a control plane (kernel and initramfs booted directly) and a
// worker (disk.raw booted by UEFI firmware and GRUB), each given its
// machine config on a cidata volume, in a lab network of the test's own (a
// bridge with taps in a network namespace, busybox udhcpd handing out
// fixed addresses). The host's kubectl sees both nodes Ready and a pod of
// an image the test built Running on the worker. Then the same VMs check
// power: the ACPI power button shuts the control plane down cleanly (its
// console says the children stopped and the data disk was unmounted and
// synced; e2fsck finds the file system clean), and after a power-on with
// the same disk the objects made before are still there.
func TestOSClusterOnVMs(t *testing.T) {
	requireVMs(t)
	c := newOSCluster(t, "none")
	t0 := time.Now()
	c.cp.boot()
	initAt := c.cp.waitConsole("k2 init running", 5*time.Minute)
	ready := c.waitAPI(10 * time.Minute)
	t.Logf("control plane: k2 init running %s, API ready %s after power-on", initAt.Round(100*time.Millisecond), ready.Round(100*time.Millisecond))
	for _, want := range []string{"machine config found", "source=cidata", "data disk mounted"} {
		if !c.cp.consoleHas(want) {
			t.Errorf("the control plane's console lacks %q (its config from cidata, its data disk)", want)
		}
	}
	// The image first: an agent lists the cluster's images when it starts.
	c.uploadPodImage()
	c.worker.boot()
	c.worker.waitConsole("k2 init running", 5*time.Minute)
	if !c.worker.consoleHas("k2 OS: loading the kernel and initramfs") {
		t.Error("the worker's console does not show GRUB booting disk.raw")
	}
	c.waitNodesReady(10*time.Minute, "control-plane", "worker-1")
	t.Logf("worker-1 Ready %s after its power-on", time.Since(c.worker.started).Round(100*time.Millisecond))

	// A real pod on the worker VM.
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeSelector: {kubernetes.io/hostname: worker-1}
  containers:
  - name: web
    image: %s
    imagePullPolicy: Never
    ports: [{containerPort: 8080}]
`, podImage)
	mf := filepath.Join(t.TempDir(), "pod.yaml")
	os.WriteFile(mf, []byte(manifest), 0o644)
	if out, err := c.kubectl("apply", "-f", mf); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	eventually(t, 5*time.Minute, "the pod Running on worker-1", func() error {
		out, err := c.kubectl("get", "pod", "web", "-o", "jsonpath={.status.phase} {.spec.nodeName} {.status.podIP}")
		return kubectlWant(err, out, strings.HasPrefix(out, "Running worker-1 "))
	})
	// kubectl exec runs in the container (through the worker's kubelet)
	// and reaches the server in it.
	eventually(t, 2*time.Minute, "kubectl exec in the pod", func() error {
		out, err := c.kubectl("exec", "web", "--", "/httpserver", "get", "http://127.0.0.1:8080/")
		return kubectlWant(err, out, strings.Contains(out, "hello from web"))
	})
	// kube-proxy's rules load iptables' extensions (-m conntrack, -j
	// MASQUERADE…) from the image.
	for _, m := range []*vm{c.cp, c.worker} {
		if m.consoleHas("Couldn't load match") || m.consoleHas("Couldn't load target") {
			t.Errorf("%s: iptables could not load an extension (see its console)", m.name)
		}
	}
	if out, err := c.kubectl("create", "configmap", "before-reboot", "--from-literal=k=v"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("cluster up and a pod running in %s", time.Since(t0).Round(time.Second))

	// The ACPI power button: a clean shutdown.
	c.cp.powerdown()
	if err := c.cp.waitExit(3 * time.Minute); err != nil {
		t.Fatalf("the control plane did not power off: %v", err)
	}
	for _, want := range []string{"power button pressed: powering off", `process stopped" process=agent`, `process stopped" process=server`, "data disk unmounted", "disks synced; poweroff"} {
		if !c.cp.consoleHas(want) {
			t.Errorf("the control plane's console lacks %q", want)
		}
	}
	if e2fsck, err := exec.LookPath("e2fsck"); err == nil {
		out, err := exec.Command(e2fsck, "-n", c.cp.disks[1]).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "clean") {
			t.Errorf("e2fsck -n of the control plane's data disk: %v\n%s", err, out)
		}
	}
	// Power on again with the same disks: the datastore kept everything.
	c.cp.boot()
	ready = c.waitAPI(10 * time.Minute)
	t.Logf("control plane API ready %s after the second power-on", ready.Round(100*time.Millisecond))
	if out, err := c.kubectl("get", "configmap", "before-reboot", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Errorf("the ConfigMap made before the power-off: %v %s", err, out)
	}
	if out, err := c.kubectl("get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"); err != nil || out != "worker-1" {
		t.Errorf("the pod made before the power-off: %v %s", err, out)
	}
	if !c.cp.consoleHas("data disk mounted") || c.cp.consoleHas("formatting the data disk") {
		t.Error("the second boot did not mount the existing data disk (or formatted it again)")
	}
	t.Logf("whole test %s", time.Since(t0).Round(time.Second))
}
