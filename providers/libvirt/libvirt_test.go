package libvirt_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"

	"k2.dev/k2/internal/freeport"
	"k2.dev/k2/internal/libvirttest"
	"k2.dev/k2/providers/libvirt"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// fakeImage writes a stand-in k2 OS image directory (k2os.json, a kernel
// and an initramfs of a few bytes) for drivers that boot nothing.
func fakeImage(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"vmlinuz": "kernel bytes", "initramfs.cpio.zst": "initramfs bytes"}
	entry := func(name string) map[string]any {
		h := sha256.Sum256([]byte(files[name]))
		return map[string]any{"file": name, "size": len(files[name]), "sha256": hex.EncodeToString(h[:])}
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := json.Marshal(map[string]any{"version": 1, "arch": "amd64", "cmdline": "console=ttyS0,115200n8",
		"kernel": entry("vmlinuz"), "initramfs": entry("initramfs.cpio.zst")})
	if err := os.WriteFile(filepath.Join(dir, "k2os.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testDriver starts a private libvirtd and returns the URI of its test
// driver. The test driver's state lives while a connection to it is open
// (and is reset when the last one closes), so one connection stays open
// for the test's length: the provider opens one per call, as it must.
func testDriver(t *testing.T) (*libvirttest.Daemon, string) {
	t.Helper()
	d := libvirttest.Start(t)
	uri := d.URI("test")
	u, _ := url.Parse(uri)
	keep, err := golibvirt.ConnectToURI(u)
	if err != nil {
		t.Fatalf("connecting to %s: %v", uri, err)
	}
	t.Cleanup(func() { keep.Disconnect() })
	return d, uri
}

func config(t testing.TB, settings map[string]any) sdk.Config {
	b, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConformance runs the provider contract against libvirt's test
// driver, through a real libvirtd.
func TestConformance(t *testing.T) {
	_, uri := testDriver(t)
	img := fakeImage(t)
	providertest.Run(t, libvirt.New, providertest.WithConfig(func(t *testing.T) sdk.Config {
		return config(t, map[string]any{"uri": uri, "image": img, "poll_interval": "50ms"})
	}))
}

func create(t *testing.T, p sdk.Provider, req *sdk.CreateRequest) *sdk.CreateResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := p.Create(ctx, req)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if resp.Diagnostics.HasErrors() {
		t.Fatalf("Create: %v", resp.Diagnostics.Err())
	}
	return resp
}

func workerRequest(reqID, env, name string, cfg sdk.Config) *sdk.CreateRequest {
	return &sdk.CreateRequest{RequestID: reqID, Config: cfg,
		Machines: []sdk.MachineRequest{{Name: name, Role: "worker", Pool: "worker", CPU: 1, MemoryBytes: 1 << 30, DiskBytes: 5 << 30,
			Labels: map[string]string{sdk.LabelEnvironment: env, "k2.dev/pool": "worker"}}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapUserData, UserData: []byte("apiVersion: machine.k2.dev/v1\n")}}
}

// TestWhatItMakes checks, through virsh (a client nobody here wrote),
// what one environment's machines consist of on the test driver: a
// labelled domain with direct kernel boot, its volumes, the shared image
// volumes, the environment's NAT network; and that Delete of the last
// machine removes all of it.
func TestWhatItMakes(t *testing.T) {
	d, uri := testDriver(t)
	cfg := config(t, map[string]any{"uri": uri, "image": fakeImage(t), "poll_interval": "50ms", "disk_cache": "unsafe"})
	p := providertest.Connect(t, libvirt.New)
	var progress []string
	req := workerRequest("req-1", "dev", "dev-worker-0", cfg)
	req.OnProgress = func(pr sdk.Progress) { progress = append(progress, pr.Machine+": "+pr.Message) }
	resp := create(t, p, req)
	m := resp.Machines[0]
	if m.Name != "dev-worker-0" || m.RequestID != "req-1" || len(m.Addresses) == 0 || m.State != sdk.StateRunning || m.CPU != 1 || m.MemoryBytes != 1<<30 {
		t.Errorf("machine: %+v", m)
	}
	all := strings.Join(progress, "\n")
	for _, want := range []string{"defining domain dev-worker-0 (1 CPU, 1Gi memory, 5Gi disk, qemu) on network k2-dev", "network k2-dev: NAT on 192.168.",
		"image vmlinuz", "image initramfs", "booting dev-worker-0", "waiting for it to join"} {
		if !strings.Contains(all, want) {
			t.Errorf("progress lacks %q:\n%s", want, all)
		}
	}
	x, err := d.Virsh("test", "dumpxml", "dev-worker-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<environment>dev</environment>", "<request-id>req-1</request-id>", "https://k2.dev/libvirt/v1",
		"/var/lib/libvirt/images/k2os-vmlinuz-", "/var/lib/libvirt/images/k2os-initramfs-", "<cmdline>console=ttyS0,115200n8</cmdline>",
		"k2-dev-worker-0-data", "k2-dev-worker-0-cidata", "k2-dev-worker-0-console.log", "network='k2-dev'",
		"<driver name='qemu' type='raw' cache='unsafe'/>"} {
		if !strings.Contains(x, want) {
			t.Errorf("domain XML lacks %q:\n%s", want, x)
		}
	}
	vols, _ := d.Virsh("test", "vol-list", "default")
	for _, want := range []string{"k2-dev-worker-0-data", "k2-dev-worker-0-cidata", "k2-dev-worker-0-console.log", "k2os-vmlinuz-", "k2os-initramfs-"} {
		if !strings.Contains(vols, want) {
			t.Errorf("pool default lacks %s:\n%s", want, vols)
		}
	}
	nx, err := d.Virsh("test", "net-dumpxml", "k2-dev")
	if err != nil || !strings.Contains(nx, "<forward mode='nat'/>") || !strings.Contains(nx, "<environment>dev</environment>") {
		t.Errorf("network k2-dev: %v\n%s", err, nx)
	}

	// A second machine of the environment shares the network and the image.
	create(t, p, workerRequest("req-2", "dev", "dev-worker-1", cfg))
	// Another request's machine of the same name is refused.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	other, err := p.Create(ctx, workerRequest("req-other", "dev", "dev-worker-0", cfg))
	if err != nil || !other.Diagnostics.HasErrors() || !strings.Contains(other.Diagnostics.Err().Error(), "belongs to request req-1") {
		t.Errorf("a name owned by another request: %v %v", err, other.Diagnostics)
	}

	del := func(id string) {
		r, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{id}})
		if err != nil || r.Diagnostics.HasErrors() {
			t.Fatalf("Delete: %v %v", err, r.Diagnostics)
		}
	}
	del(m.ID)
	if _, err := d.Virsh("test", "net-info", "k2-dev"); err != nil {
		t.Errorf("the network went with the first of two machines: %v", err)
	}
	if vols, _ := d.Virsh("test", "vol-list", "default"); strings.Contains(vols, "dev-worker-0") || !strings.Contains(vols, "k2os-vmlinuz-") {
		t.Errorf("after deleting one machine of two:\n%s", vols)
	}
	l, _ := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if len(l.Machines) != 1 || l.Machines[0].Name != "dev-worker-1" {
		t.Fatalf("List: %+v", l.Machines)
	}
	del(l.Machines[0].ID)
	if out, err := d.Virsh("test", "net-list", "--all", "--name"); err != nil || strings.Contains(out, "k2-dev") {
		t.Errorf("networks after the last machine: %q %v", out, err)
	}
	if vols, _ := d.Virsh("test", "vol-list", "default"); strings.Contains(vols, "k2") {
		t.Errorf("volumes after the last machine:\n%s", vols)
	}
	if doms, _ := d.Virsh("test", "list", "--all", "--name"); strings.Contains(doms, "dev-") {
		t.Errorf("domains after the last machine: %q", doms)
	}
}

// TestBadConfig: each bad setting is reported at its path, before any
// connection.
func TestBadConfig(t *testing.T) {
	p := providertest.Connect(t, libvirt.New)
	for _, tc := range []struct {
		settings map[string]any
		path     string
	}{
		{map[string]any{"disk_cache": "fast"}, "config.disk_cache"},
		{map[string]any{"uri": "qemu:///session"}, "config.uri"},
		{map[string]any{"cpu_model": "bad model"}, "config.cpu_model"},
	} {
		r, err := p.Validate(context.Background(), &sdk.ValidateRequest{Config: config(t, tc.settings)})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, d := range r.Diagnostics {
			found = found || d.Path == tc.path
		}
		if !found {
			t.Errorf("%v: diagnostics %v, want one at %s", tc.settings, r.Diagnostics, tc.path)
		}
	}
}

// TestPowerAndConsole drives Power and Console through the plugin
// protocol against the test driver, checking the domain's state with
// virsh: off shuts it off, on and reset leave it running, List agrees; a
// bad action or machine is a diagnostic. The test driver keeps no console
// log and has no console to follow: Console says so instead of failing,
// and following ends with ctx.
func TestPowerAndConsole(t *testing.T) {
	d, uri := testDriver(t)
	cfg := config(t, map[string]any{"uri": uri, "image": fakeImage(t), "poll_interval": "50ms", "shutdown_timeout": "2s"})
	p := providertest.Connect(t, libvirt.New)
	m := create(t, p, workerRequest("req-1", "dev", "dev-worker-0", cfg)).Machines[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() { p.Delete(context.Background(), &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{m.ID}}) })

	for _, tc := range []struct{ action, state, domstate string }{
		{sdk.PowerOff, sdk.StateStopped, "shut off"},
		{sdk.PowerOff, sdk.StateStopped, "shut off"}, // already off
		{sdk.PowerOn, sdk.StateRunning, "running"},
		{sdk.PowerReset, sdk.StateRunning, "running"},
		{sdk.PowerOff, sdk.StateStopped, "shut off"},
		{sdk.PowerReset, sdk.StateRunning, "running"}, // reset of an off machine starts it
	} {
		r, err := p.Power(ctx, &sdk.PowerRequest{Config: cfg, MachineID: m.ID, Action: tc.action})
		if err != nil || r.Diagnostics.HasErrors() {
			t.Fatalf("power %s: %v %v", tc.action, err, r.Diagnostics)
		}
		if r.State != tc.state {
			t.Errorf("power %s: state %q, want %q", tc.action, r.State, tc.state)
		}
		if out, err := d.Virsh("test", "domstate", "dev-worker-0"); err != nil || strings.TrimSpace(out) != tc.domstate {
			t.Errorf("power %s: virsh domstate %q %v, want %q", tc.action, strings.TrimSpace(out), err, tc.domstate)
		}
		l, err := p.List(ctx, &sdk.ListRequest{Config: cfg})
		if err != nil || len(l.Machines) != 1 || l.Machines[0].State != tc.state {
			t.Errorf("power %s: List %+v %v, want one machine %s", tc.action, l, err, tc.state)
		}
	}
	for _, tc := range []struct{ id, action, path string }{
		{m.ID, "reboot", "action"},
		{"no-such-machine", sdk.PowerOn, "machineID"},
	} {
		r, err := p.Power(ctx, &sdk.PowerRequest{Config: cfg, MachineID: tc.id, Action: tc.action})
		if err != nil || !r.Diagnostics.HasErrors() || r.Diagnostics[0].Path != tc.path {
			t.Errorf("power %s %s: %v %+v, want a diagnostic at %s", tc.action, tc.id, err, r, tc.path)
		}
	}

	var out strings.Builder
	if err := p.Console(ctx, &sdk.ConsoleRequest{Config: cfg, MachineID: m.ID, Output: &out}); err != nil {
		t.Errorf("Console: %v", err)
	}
	if want := "(the test driver keeps no console log of dev-worker-0)\n"; out.String() != want {
		t.Errorf("Console wrote %q, want %q", out.String(), want)
	}
	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	defer fcancel()
	out.Reset()
	start := time.Now()
	if err := p.Console(fctx, &sdk.ConsoleRequest{Config: cfg, MachineID: m.ID, Follow: true, Output: &out}); err != nil {
		t.Errorf("Console -f: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Console -f returned %s after its ctx ended", took-2*time.Second)
	}
	t.Logf("Console -f wrote %q", out.String())
	if err := p.Console(ctx, &sdk.ConsoleRequest{Config: cfg, MachineID: "no-such-machine", Output: &out}); err == nil || !strings.Contains(err.Error(), "no machine no-such-machine") {
		t.Errorf("Console of an unknown machine: %v", err)
	}
}

// TestRemoteTransports runs the provider contract against a libvirtd
// reached as remote hypervisors are: over qemu+tcp:// (libvirtd's own TCP
// listener), qemu+tls:// (its TLS listener) and qemu+ssh:// (Debian's
// OpenSSH sshd forwarding to libvirtd's socket: the homelab case), with
// the test driver, so nothing boots. Then what a user gets wrong there —
// a host key not in known_hosts, a key sshd does not take, nothing
// listening, TLS certificates missing or from another CA — is a
// diagnostic at config.uri that says what to do.
func TestRemoteTransports(t *testing.T) {
	t.Setenv("SSH_AUTH_SOCK", "") // only the key the URI names
	d, _ := testDriver(t)
	sshd := d.StartSSHD(t)
	sshURI := sshd.URI("test", d.Forward(t, sshd.Addr))
	tlsURI := d.TLSURI("test", d.Forward(t, libvirttest.TLSAddr))
	img := fakeImage(t)
	for _, tc := range []struct{ name, uri string }{
		{"tcp", d.TCPURI("test", d.Forward(t, libvirttest.TCPAddr))},
		{"ssh", sshURI},
		{"tls", tlsURI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			providertest.Run(t, libvirt.New, providertest.WithConfig(func(t *testing.T) sdk.Config {
				return config(t, map[string]any{"uri": tc.uri, "image": img, "poll_interval": "50ms"})
			}))
		})
	}
	if log := sshd.Log(); !strings.Contains(log, "Accepted publickey for root") {
		t.Errorf("sshd logged no login: the ssh run did not go through it:\n%s", log)
	}

	otherKey := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", otherKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	// uri with a query parameter changed ("" drops it).
	with := func(uri, key, value string) string {
		u, _ := url.Parse(uri)
		q := u.Query()
		if q.Del(key); value != "" {
			q.Set(key, value)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	// TLS with certificates libvirtd does not trust, or none: a PKI of
	// another CA, and the daemon's CA with the other CA's client.
	otherPKI, mixedPKI := t.TempDir(), t.TempDir()
	if err := libvirttest.WritePKI(otherPKI); err != nil {
		t.Fatal(err)
	}
	for src, files := range map[string][]string{d.PKIDir(): {"cacert.pem"}, otherPKI: {"clientcert.pem", "clientkey.pem"}} {
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mixedPKI, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	refused := fmt.Sprintf("127.0.0.1:%d", port)
	for _, tc := range []struct{ name, uri, want string }{
		// root's ~/.ssh/known_hosts (read, never written) lacks this
		// sshd's fresh key, or does not exist.
		{"host key not known", with(sshURI, "no_verify", ""), "ssh to 127.0.0.1 once as that user to add it (or add no_verify=1"},
		{"key not accepted", with(sshURI, "keyfile", otherKey), `add its public half to ~/.ssh/authorized_keys of "root" on the host`},
		{"no libvirtd behind sshd", with(sshURI, "socket", filepath.Join(t.TempDir(), "no-such-sock")), "could not reach libvirtd's socket there"},
		{"tcp: nothing listening", "test+tcp://" + refused + "/default", "nothing listens at " + refused + ": libvirtd must run there with --listen"},
		{"ssh: nothing listening", "qemu+ssh://root@" + refused + "/system", "nothing listens at " + refused + ": sshd must run there"},
		{"tls: no client certificate", with(tlsURI, "pkipath", t.TempDir()), "k2 needs cacert.pem, clientcert.pem and clientkey.pem in the directory ?pkipath=DIR names"},
		{"tls: server of another CA", with(tlsURI, "pkipath", otherPKI), "libvirtd's certificate does not check out against cacert.pem"},
		{"tls: client of another CA", with(tlsURI, "pkipath", mixedPKI), "most likely it refused k2's client certificate; sign clientcert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			p := providertest.Connect(t, libvirt.New)
			r, err := p.List(ctx, &sdk.ListRequest{Config: config(t, map[string]any{"uri": tc.uri, "image": img})})
			if err != nil {
				t.Fatalf("List: %v (want a diagnostic)", err)
			}
			if !r.Diagnostics.HasErrors() {
				t.Fatalf("no diagnostic, want one at config.uri saying %q", tc.want)
			}
			if r.Diagnostics[0].Path != "config.uri" || !strings.Contains(r.Diagnostics[0].String(), tc.want) {
				t.Errorf("diagnostics %v, want one at config.uri saying %q", r.Diagnostics, tc.want)
			}
			t.Logf("%s", r.Diagnostics[0])
		})
	}
}
