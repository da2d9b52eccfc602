// Package libvirttest runs a private libvirtd for tests: Debian's libvirtd
// and virtlogd, started by the test itself (there is no systemd), inside a
// network namespace the test creates and a mount namespace of their own.
// The NAT networks it makes, their bridges, dnsmasq, iptables rules and
// every VM address live in that network namespace; its state
// (/etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
// /var/log/libvirt) lives in a temporary directory bind-mounted over those
// paths in its mount namespace only; its sockets are in that directory. So
// several daemons (other tests, other engineers) run side by side on one
// host without touching each other or the host's own libvirt.
//
// Clients reach it through its socket: URI("qemu") is
// qemu:///system?socket=…, URI("test") the daemon's test:///default driver.
// It also listens on TCP (TCPAddr, in its namespace, without
// authentication: qemu+tcp://) and TLS (TLSAddr, client certificates from
// a CA of its own: qemu+tls://), and StartSSHD serves its socket over
// OpenSSH (qemu+ssh://), as remote hypervisors are reached.
// Programs that must reach the VMs (k2 deploy, kubectl) run in the
// namespace with Command.
package libvirttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Daemon is a running private libvirtd.
type Daemon struct {
	// Dir holds the daemon's state, logs and sockets.
	Dir string
	// Netns is the network namespace it runs in.
	Netns string
	// Socket is libvirtd's read-write unix socket.
	Socket string
	cmd    *exec.Cmd
}

// Usable says why a daemon cannot run here ("" when it can): root, ip,
// libvirtd and virtlogd are needed.
func Usable() string {
	if os.Geteuid() != 0 {
		return "a private libvirtd needs root (network and mount namespaces)"
	}
	for _, p := range []string{"ip", "libvirtd", "virtlogd", "mount"} {
		if _, err := lookPath(p); err != nil {
			return p + " is not installed (.ci/run installs libvirt-daemon-system and iproute2)"
		}
	}
	return ""
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// Start starts a daemon for t, stopped (with every VM, network and process
// it started) when t ends. Where a daemon cannot run it skips t, or fails
// it when $CI is set. It first stops daemons left by test processes that
// died without their cleanups.
func Start(t testing.TB) *Daemon {
	t.Helper()
	if why := Usable(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("libvirt tests need a private libvirtd in CI: %s", why)
		}
		t.Skip(why)
	}
	reapStale()
	d, err := start()
	if d != nil {
		t.Cleanup(d.Stop)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("libvirtd in %s:\n%s", d.Netns, d.Logs())
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func start() (*Daemon, error) {
	suffix := make([]byte, 4)
	rand.Read(suffix)
	// Short: the socket path must fit sun_path (108 bytes).
	dir, err := os.MkdirTemp("", "k2lv-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Netns: "k2lv-" + hex.EncodeToString(suffix), Socket: filepath.Join(dir, "sock", "libvirt-sock")}
	if out, err := exec.Command("ip", "netns", "add", d.Netns).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("ip netns add %s: %w: %s", d.Netns, err, out)
	}
	// Whose it is, so a later Start can clean up after a test process
	// that died without its cleanups (a timeout's panic, SIGKILL).
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(fmt.Sprintf("%d %s\n", os.Getpid(), d.Netns)), 0o644); err != nil {
		return d, err
	}
	if err := WritePKI(d.PKIDir()); err != nil {
		return d, fmt.Errorf("making the daemon's TLS certificates: %w", err)
	}
	script := filepath.Join(dir, "start.sh")
	if err := os.WriteFile(script, []byte(startScript), 0o755); err != nil {
		return d, err
	}
	log, err := os.Create(filepath.Join(dir, "daemon.out"))
	if err != nil {
		return d, err
	}
	defer log.Close()
	d.cmd = exec.Command("ip", "netns", "exec", d.Netns, "unshare", "--mount", "--propagation", "private", "sh", script, dir)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return d, fmt.Errorf("starting libvirtd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(d.Socket); err == nil {
			if _, err := d.virsh("qemu", "uri"); err == nil {
				return d, nil
			}
		}
		select {
		case err := <-exited:
			return d, fmt.Errorf("libvirtd exited: %w\n%s", err, d.Logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return d, fmt.Errorf("libvirtd did not open %s within 60s\n%s", d.Socket, d.Logs())
		}
	}
}

const ownerFile = "owner"

// reapStale stops the daemons of test processes that are gone.
func reapStale() {
	owners, _ := filepath.Glob(filepath.Join(os.TempDir(), "k2lv-*", ownerFile))
	for _, f := range owners {
		var pid int
		var netns string
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, _ := fmt.Sscanf(string(b), "%d %s", &pid, &netns); n != 2 || !strings.HasPrefix(netns, "k2lv-") {
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			continue // alive (or not ours to judge)
		}
		(&Daemon{Dir: filepath.Dir(f), Netns: netns}).Stop()
	}
}

// startScript runs in the daemon's network namespace and a new mount
// namespace: private copies of libvirt's directories, then virtlogd and
// libvirtd. The qemu driver runs VMs as root without cgroups, namespaces
// or a security driver: the host has no systemd and this is a test.
const startScript = `set -e
D=$1
mkdir -p "$D/etc" "$D/run" "$D/lib/images" "$D/cache" "$D/log" "$D/sock"
cp -a /etc/libvirt/. "$D/etc/"
# No network of the host's configuration (Debian autostarts "default").
rm -rf "$D/etc/qemu/networks" "$D/etc/qemu/autostart" "$D/etc/storage"
mkdir -p "$D/etc/qemu/networks/autostart"
cat > "$D/etc/libvirtd.conf" <<EOF
unix_sock_dir = "$D/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$D/libvirtd.log"
listen_tcp = 1
listen_tls = 1
listen_addr = "127.0.0.1"
tcp_port = "16509"
auth_tcp = "none"
tls_port = "16514"
auth_tls = "none"
ca_file = "$D/pki/cacert.pem"
cert_file = "$D/pki/servercert.pem"
key_file = "$D/pki/serverkey.pem"
EOF
cat > "$D/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
EOF
for p in /etc/libvirt:etc /run/libvirt:run /var/lib/libvirt:lib /var/cache/libvirt:cache /var/log/libvirt:log; do
	target=${p%%:*}; src=${p#*:}
	mkdir -p "$target"
	mount --bind "$D/$src" "$target"
done
ip link set lo up
virtlogd -p "$D/virtlogd.pid" &
exec libvirtd --listen -p "$D/libvirtd.pid" -f /etc/libvirt/libvirtd.conf
`

// URI returns the URI of a driver of the daemon: "qemu" (qemu:///system)
// or "test" (test:///default: a fake hypervisor in the daemon, whose state
// lives while a connection to it stays open).
func (d *Daemon) URI(driver string) string {
	switch driver {
	case "test":
		return "test:///default?socket=" + d.Socket
	default:
		return "qemu:///system?socket=" + d.Socket
	}
}

// Command returns cmd to run name with args in the daemon's network
// namespace (where its VMs' addresses are reachable).
func (d *Daemon) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", d.Netns, name}, args...)...)
}

// Virsh runs virsh on a driver of the daemon — an independent client for
// checking what exists.
func (d *Daemon) Virsh(driver string, args ...string) (string, error) {
	return d.virsh(driver, args...)
}

func (d *Daemon) virsh(driver string, args ...string) (string, error) {
	uri := d.URI(driver)
	if driver == "test" {
		uri = "test+unix:///default?socket=" + d.Socket // through the daemon, not virsh's own test driver
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-q", "-c", uri}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virsh %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Logs returns the tail of libvirtd's log and the daemons' output.
func (d *Daemon) Logs() string {
	var sb strings.Builder
	for _, f := range []string{"daemon.out", "libvirtd.log"} {
		b, _ := os.ReadFile(filepath.Join(d.Dir, f))
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		fmt.Fprintf(&sb, "== %s\n%s\n", f, b)
	}
	return sb.String()
}

// Stop destroys the daemon's VMs and networks, stops it and removes its
// namespace and directory.
func (d *Daemon) Stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		if out, err := d.virsh("qemu", "list", "--name"); err == nil {
			for _, n := range strings.Fields(out) {
				d.virsh("qemu", "destroy", n)
			}
		}
		if out, err := d.virsh("qemu", "net-list", "--name"); err == nil {
			for _, n := range strings.Fields(out) {
				d.virsh("qemu", "net-destroy", n)
			}
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
	}
	// Whatever still runs in the namespace (qemu, dnsmasq, virtlogd).
	for range 50 {
		pids := d.pids()
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	exec.Command("ip", "netns", "del", d.Netns).Run()
	if d.Dir != "" {
		os.RemoveAll(d.Dir)
	}
}

// pids lists the processes in the daemon's network namespace, but for
// this one (whose sockets, not its threads, may be in there: netns).
func (d *Daemon) pids() []int {
	out, err := exec.Command("ip", "netns", "pids", d.Netns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil && p != os.Getpid() {
			pids = append(pids, p)
		}
	}
	return pids
}
