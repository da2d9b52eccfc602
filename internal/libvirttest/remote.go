package libvirttest

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k2.dev/k2/internal/netns"
)

// TCPAddr is where the daemon listens for qemu+tcp:// clients, inside its
// network namespace (a client outside reaches it through Forward).
const TCPAddr = "127.0.0.1:16509"

// SSHD is Debian's OpenSSH server run in the daemon's network namespace:
// the way a homelab reaches a remote hypervisor (qemu+ssh://). It lets
// root in with one key, made for it, and forwards clients' connections
// to the daemon's socket (streamlocal forwarding, as libvirt's ssh
// transport asks).
type SSHD struct {
	// Addr is where it listens in the daemon's namespace.
	Addr string
	// KeyFile is the private key it accepts for root.
	KeyFile string
	daemon  *Daemon
}

// SSHDUsable says why StartSSHD cannot run here ("" when it can).
func SSHDUsable() string {
	for _, p := range []string{"sshd", "ssh-keygen"} {
		if _, err := lookPath(p); err != nil {
			return p + " is not installed (.ci/run installs openssh-server)"
		}
	}
	return ""
}

// StartSSHD starts an sshd for the daemon, stopped when t ends (or with
// the daemon). Where sshd is not installed it skips t, or fails it when
// $CI is set.
func (d *Daemon) StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if why := SSHDUsable(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("the libvirt ssh tests need OpenSSH in CI: %s", why)
		}
		t.Skip(why)
	}
	dir := filepath.Join(d.Dir, "sshd")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	keygen, _ := lookPath("ssh-keygen")
	for _, k := range []string{"host", "client"} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "k2-libvirttest-"+k, "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(filepath.Join(dir, "client.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &SSHD{Addr: "127.0.0.1:2222", KeyFile: filepath.Join(dir, "client"), daemon: d}
	conf := fmt.Sprintf(`ListenAddress %s
HostKey %s/host
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
LogLevel VERBOSE
`, s.Addr, dir, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd's privilege separation needs its empty directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	sshd, _ := lookPath("sshd")
	log, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command("ip", "netns", "exec", d.Netns, sshd, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sshd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("sshd:\n%s", s.Log())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := netns.Dial("/run/netns/"+d.Netns, s.Addr); err == nil {
			c.Close()
			return s
		}
		select {
		case err := <-exited:
			t.Fatalf("sshd exited: %v\n%s", err, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen on %s within 30s", s.Addr)
		}
	}
}

// Log returns what sshd logged (at VERBOSE: each login and key).
func (s *SSHD) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.daemon.Dir, "sshd", "sshd.log"))
	return string(b)
}

// URI is the qemu+ssh:// (or test+ssh://) URI of a driver of the daemon
// through this sshd at addr (s.Addr inside the namespace, or a Forward
// of it): as root, with s's key, to the daemon's socket. The host key is
// not checked (no_verify=1): known_hosts is read from root's home, which
// a test must not write.
func (s *SSHD) URI(driver, addr string) string {
	q := url.Values{"socket": {s.daemon.Socket}, "keyfile": {s.KeyFile}, "no_verify": {"1"}}
	return fmt.Sprintf("%s+ssh://root@%s/%s?%s", uriDriver(driver), addr, uriPath(driver), q.Encode())
}

// TCPURI is the qemu+tcp:// (or test+tcp://) URI of a driver of the
// daemon at addr (TCPAddr inside its namespace, or a Forward of it).
func (d *Daemon) TCPURI(driver, addr string) string {
	return fmt.Sprintf("%s+tcp://%s/%s", uriDriver(driver), addr, uriPath(driver))
}

// PKIDir holds the daemon's CA certificate and a client certificate and
// key it accepts, as libvirt's clients want them (?pkipath=).
func (d *Daemon) PKIDir() string { return filepath.Join(d.Dir, "pki") }

// TLSURI is the qemu+tls:// (or test+tls://) URI of a driver of the
// daemon at addr (TLSAddr inside its namespace, or a Forward of it), with
// the client certificate in PKIDir.
func (d *Daemon) TLSURI(driver, addr string) string {
	return fmt.Sprintf("%s+tls://%s/%s?%s", uriDriver(driver), addr, uriPath(driver), url.Values{"pkipath": {d.PKIDir()}}.Encode())
}

func uriDriver(driver string) string {
	if driver == "test" {
		return "test"
	}
	return "qemu"
}

func uriPath(driver string) string {
	if driver == "test" {
		return "default"
	}
	return "system"
}

// Forward listens on a free port of the host's loopback and relays each
// connection to addr inside the daemon's namespace, until t ends: how a
// client outside the namespace (a test's own process) reaches a server
// inside it. It returns the loopback address.
func (d *Daemon) Forward(t testing.TB, addr string) string {
	t.Helper()
	f, err := netns.Forward("127.0.0.1:0", "/run/netns/"+d.Netns, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f.Addr()
}
