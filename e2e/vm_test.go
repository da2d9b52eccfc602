package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"k2.dev/k2/internal/fatfs"
	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/netns"
)

// requireVMs skips unless the VM tests are asked for (K2_VM_E2E=1, which
// make test-vm-run sets: it runs them alone, after the other e2e tests,
// because emulated VMs slow down many times on a loaded host) and fails
// unless they can run here: root, qemu-system-x86_64, Debian's kernel in
// /boot, busybox's udhcpd for the lab's DHCP.
func requireVMs(t testing.TB) {
	t.Helper()
	if os.Getenv("K2_VM_E2E") == "" {
		t.Skip("VM tests: set K2_VM_E2E=1 (make test and make test-vm do)")
	}
	requireVMHost(t, t.Fatalf) // asked for: a missing piece is an error
}

// requireVMHost checks what booting k2 OS in qemu needs, calling fail for
// what is missing.
func requireVMHost(t testing.TB, fail func(string, ...any)) {
	t.Helper()
	requireLab(t)
	for _, bin := range []string{"qemu-system-x86_64", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			fail("%s not installed (.ci/run installs qemu-system-x86 and busybox-static)", bin)
		}
	}
	if ks, _ := filepath.Glob("/boot/vmlinuz-*"); len(ks) == 0 {
		fail("no kernel in /boot (.ci/run installs linux-image-amd64)")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(k2Bin), "containerd-shim-runc-v2")); err != nil {
		fail("containerd-shim-runc-v2 not beside %s (make build)", k2Bin)
	}
}

// buildOS builds the k2 OS image of the k2 under test into a directory.
// Extra arguments go to k2 os build.
func buildOS(t testing.TB, compress string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	mustK2(t, t.TempDir(), append([]string{"os", "build", "-o", dir, "--k2", k2Bin, "--compress", compress}, args...)...)
	t.Logf("k2 os build --compress %s %s: %s", compress, strings.Join(args, " "), time.Since(start).Round(100*time.Millisecond))
	return dir
}

// vmCmdline is the kernel command line the tests boot k2 OS with: the
// serial console, qemu exits on a panic (-no-reboot), and
// mitigations=off: page-table isolation makes every system call flush
// the emulated TLB, which TCG pays dearly for.
const vmCmdline = "console=ttyS0,115200n8 panic=-1 mitigations=off"

// ovmfCode is the UEFI firmware (Debian's ovmf) a VM boots a raw disk with.
const ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"

// osImage reads an image directory's k2os.json.
type osImage struct {
	Kernel    struct{ File string }
	Initramfs struct {
		File         string
		Size         int64
		Uncompressed int64
	}
	Disk    *struct{ File string }
	Cmdline string
}

func readOSImage(t testing.TB, dir string) osImage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "k2os.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m osImage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// vm is a qemu-system-x86_64 (TCG) machine plugged into the lab's bridge
// by a tap, booting a kernel and initramfs directly, with a cidata volume
// and a data disk.
type vm struct {
	t       testing.TB
	l       *lab
	name    string
	mac     string
	tap     string
	kernel  string
	initrd  string
	cmdline string
	disks   []string // raw images, in order: vda, vdb…
	// uefi: boot the first disk (a k2 OS disk.raw, not written) with
	// OVMF instead of the kernel and initrd directly.
	uefi    bool
	dir     string
	console string // the serial console's log
	qmp     string // the QMP socket
	cmd     *exec.Cmd
	done    chan error
	started time.Time
}

func (l *lab) newVM(t testing.TB, name, mac, kernel, initrd, cmdline string, disks ...string) *vm {
	t.Helper()
	l.n++
	v := &vm{t: t, l: l, name: name, mac: mac, tap: fmt.Sprintf("tap%d", l.n), kernel: kernel, initrd: initrd, cmdline: cmdline, disks: disks, dir: t.TempDir()}
	v.console = filepath.Join(v.dir, "console.log")
	v.qmp = filepath.Join(v.dir, "qmp.sock")
	l.in("ip", "tuntap", "add", v.tap, "mode", "tap")
	l.in("ip", "link", "set", v.tap, "master", "br0", "up")
	t.Cleanup(func() {
		v.kill()
		if t.Failed() {
			b, _ := os.ReadFile(v.console)
			t.Logf("console of %s (last 200 lines):\n%s", v.name, lastLines(string(b), 200))
			// K2_E2E_KEEP=DIR keeps whole consoles of a failed test (CI artifacts).
			if keep := os.Getenv("K2_E2E_KEEP"); keep != "" {
				p := filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-"+v.name+".console.log")
				if os.MkdirAll(keep, 0o755) == nil && os.WriteFile(p, b, 0o644) == nil {
					t.Logf("whole console of %s: %s", v.name, p)
				}
			}
		}
	})
	return v
}

// boot powers the machine on.
func (v *vm) boot() {
	v.t.Helper()
	// The default CPU model (qemu64): with -cpu max, Debian's kernel once
	// hung in a crypto self-test under TCG here (soft lockup in
	// cryptomgr_test).
	args := []string{"qemu-system-x86_64", "-accel", "tcg", "-m", "2048", "-smp", "2", "-no-reboot",
		"-display", "none", "-monitor", "none", "-serial", "file:" + v.console,
		"-qmp", "unix:" + v.qmp + ",server=on,wait=off",
		"-netdev", "tap,id=n0,ifname=" + v.tap + ",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac=" + v.mac}
	disks := v.disks
	if v.uefi {
		vars := filepath.Join(v.dir, "OVMF_VARS.fd")
		if _, err := os.Stat(vars); err != nil {
			b, err := os.ReadFile(strings.Replace(ovmfCode, "CODE", "VARS", 1))
			if err != nil {
				v.t.Fatalf("UEFI firmware: %v (.ci/run installs ovmf)", err)
			}
			os.WriteFile(vars, b, 0o600)
		}
		args = append(args, "-drive", "if=pflash,format=raw,readonly=on,file="+ovmfCode,
			"-drive", "if=pflash,format=raw,file="+vars,
			"-drive", "file="+disks[0]+",format=raw,if=virtio,snapshot=on")
		disks = disks[1:]
	} else {
		args = append(args, "-kernel", v.kernel, "-initrd", v.initrd, "-append", v.cmdline)
	}
	for _, d := range disks {
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio,cache=unsafe")
	}
	os.Remove(v.console)
	v.cmd = nsCommand(context.Background(), v.l.ns, args...)
	out, _ := os.Create(filepath.Join(v.dir, "qemu.log"))
	v.cmd.Stdout, v.cmd.Stderr = out, out
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		v.t.Fatal(err)
	}
	v.done = make(chan error, 1)
	go func() { v.done <- v.cmd.Wait(); out.Close() }()
}

// powerdown presses the ACPI power button (QMP system_powerdown).
func (v *vm) powerdown() {
	v.t.Helper()
	if err := qmpCommand(v.qmp, "system_powerdown"); err != nil {
		v.t.Fatalf("powering %s down: %v", v.name, err)
	}
}

// waitExit waits for qemu to exit (the guest powered off).
func (v *vm) waitExit(d time.Duration) error {
	select {
	case err := <-v.done:
		v.done = nil
		return err
	case <-time.After(d):
		return fmt.Errorf("%s still running after %s", v.name, d)
	}
}

func (v *vm) kill() {
	if v.cmd != nil && v.cmd.Process != nil && v.done != nil {
		v.cmd.Process.Kill()
		<-v.done
		v.done = nil
	}
}

// consoleHas reports whether the console shows s.
func (v *vm) consoleHas(s string) bool {
	b, _ := os.ReadFile(v.console)
	return strings.Contains(string(b), s)
}

// waitConsole waits until the console shows s and returns how long after
// power-on that was.
func (v *vm) waitConsole(s string, d time.Duration) time.Duration {
	v.t.Helper()
	deadline := time.Now().Add(d)
	for !v.consoleHas(s) {
		if time.Now().After(deadline) {
			v.t.Fatalf("%s: no %q on the console after %s", v.name, s, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(v.started)
}

// qmpCommand runs one QMP command on a qemu's socket.
func qmpCommand(sock, command string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if _, err := r.ReadString('\n'); err != nil { // greeting
		return err
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		if _, err := fmt.Fprintf(c, `{"execute":%q}`+"\n", cmd); err != nil {
			return err
		}
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if strings.Contains(line, `"return"`) {
				break
			}
			if strings.Contains(line, `"error"`) {
				return fmt.Errorf("%s: %s", cmd, line)
			}
		}
	}
	return nil
}

// cidataImage writes a NoCloud volume holding a machine config.
func cidataImage(t testing.TB, config, instanceID string) string {
	t.Helper()
	userData, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	img, err := fatfs.Cidata(userData, instanceID)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cidata.img")
	if err := os.WriteFile(p, img, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// emptyDisk makes a sparse raw disk.
func emptyDisk(t testing.TB, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	return p
}

// startDHCP runs busybox's udhcpd on the lab's bridge, with fixed
// addresses for the given MACs and the lab as the router.
func (l *lab) startDHCP(t testing.TB, leases map[string]string) {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "start %s.100\nend %s.200\ninterface br0\nlease_file %s/leases\npidfile %s/pid\n", labSubnet, labSubnet, dir, dir)
	fmt.Fprintf(&b, "option subnet 255.255.255.0\noption router %s.1\noption lease 3600\n", labSubnet)
	for mac, ip := range leases {
		fmt.Fprintf(&b, "static_lease %s %s\n", mac, ip)
	}
	cfg := filepath.Join(dir, "udhcpd.conf")
	os.WriteFile(cfg, []byte(b.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "leases"), nil, 0o644)
	cmd := nsCommand(context.Background(), l.ns, "busybox", "udhcpd", "-f", cfg)
	log, _ := os.Create(filepath.Join(dir, "udhcpd.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
}

// forward listens on 127.0.0.1 and relays each connection to target
// inside the lab's network namespace, so the host's own tools (kubectl,
// the test's clients) reach the VMs without a route into the lab.
func (l *lab) forward(t testing.TB, target string) string {
	t.Helper()
	f, err := netns.Forward("127.0.0.1:0", "/run/netns/"+l.ns, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f.Addr()
}

// buildVMWebArtifact builds tag in home: `MACHINES control-plane=1
// worker=1` and an App of 2 replicas of an HTTP server image the test
// makes, vendored into the artifact — VMs reach no registry, so the image
// must come with it (the registry it was pushed to is gone afterwards).
func buildVMWebArtifact(t testing.TB, home, tag string) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	image := strings.TrimPrefix(reg.URL, "http://") + "/web:v1"
	imagetest.Push(t, imagetest.HTTPServerImage(t), image)
	dir := writeFiles(t, map[string]string{"K8sfile": fmt.Sprintf(
		"FROM k2/base:v1.37\nAPP web image=%s port=8080 replicas=2\nMACHINES control-plane=1 worker=1 cpu=2 memory=2Gi\n", image)})
	mustK2(t, home, "build", "-q", "-t", tag, "--vendor-images", dir)
}
