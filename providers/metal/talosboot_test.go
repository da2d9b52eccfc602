package metal

import (
	"context"
	"crypto/tls"
	stdx509 "crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/siderolabs/crypto/x509"
	machineapi "github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// fakeApid is a FAKE of Talos's apid, the machine API a Talos node serves
// on port 50000: only MachineService.Bootstrap, over mutual TLS — a server
// certificate for 127.0.0.1 signed by the cluster's OS CA, client
// certificates required and checked against that CA — with the gRPC
// service generated from Talos's own API definitions (machinery). Talos
// itself cannot boot here (no Talos images, no internet). It leaves out
// everything else apid does (etcd, other RPCs, proxying to other nodes).
type fakeApid struct {
	machineapi.UnimplementedMachineServiceServer
	mu    sync.Mutex
	calls []string // the client certificate's organizations, per call
	addr  string
}

// startFakeApid serves on a loopback port; bundle is read when the first
// client connects (Create makes it).
func startFakeApid(t *testing.T, bundle func() *secrets.Bundle) *fakeApid {
	f := &fakeApid{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	tlsCfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		b := bundle()
		ca, err := x509.NewCertificateAuthorityFromCertificateAndKey(b.Certs.OS)
		if err != nil {
			return nil, err
		}
		kp, err := x509.NewKeyPair(ca, x509.CommonName("talos-node"), x509.IPAddresses([]net.IP{net.IPv4(127, 0, 0, 1)}),
			x509.NotAfter(time.Now().Add(time.Hour)), x509.ExtKeyUsage([]stdx509.ExtKeyUsage{stdx509.ExtKeyUsageServerAuth}))
		if err != nil {
			return nil, err
		}
		pool := stdx509.NewCertPool()
		pool.AppendCertsFromPEM(b.Certs.OS.Crt)
		return &tls.Config{Certificates: []tls.Certificate{*kp.Certificate}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, NextProtos: []string{"h2"}}, nil
	}}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	machineapi.RegisterMachineServiceServer(srv, f)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeApid) Bootstrap(ctx context.Context, _ *machineapi.BootstrapRequest) (*machineapi.BootstrapResponse, error) {
	var orgs string
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			orgs = strings.Join(ti.State.PeerCertificates[0].Subject.Organization, ",")
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, orgs)
	return &machineapi.BootstrapResponse{}, nil
}

func (f *fakeApid) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// talosFirmware plays a Talos machine's network boot on power-on: iPXE's
// scripts, the kernel from k2, then Talos fetching its config (the
// talos.config= URL), and the same URL again (which must be gone).
type talosBoot struct {
	script, config string
	again          int
}

func talosFirmware(t *testing.T, bootURL, mac string, got chan<- talosBoot) func(id, state, target string) error {
	return func(_, state, target string) error {
		if state == "Off" || target != "Pxe" {
			return nil
		}
		go func() {
			fetch := func(url string) (int, string) {
				resp, err := http.Get(url)
				if err != nil {
					t.Errorf("firmware: %v", err)
					return 0, ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			_, chain := fetch(bootURL + "/boot.ipxe")
			var tb talosBoot
			_, tb.script = fetch(strings.ReplaceAll(strings.Fields(chain)[2], "${mac:hexhyp}", strings.ReplaceAll(mac, ":", "-")))
			for _, l := range strings.Split(tb.script, "\n") {
				f := strings.Fields(l)
				if len(f) > 1 && f[0] == "kernel" {
					fetch(f[1])
					for _, a := range f {
						if u, ok := strings.CutPrefix(a, "talos.config="); ok {
							_, tb.config = fetch(u)
							tb.again, _ = fetch(u)
						}
					}
				}
			}
			got <- tb
		}()
		return nil
	}
}

// TestCreateTalos: with an OS talos artifact, Create serves each server
// iPXE booting the configured Talos kernel (from k2) and initramfs (from
// the site's mirror URL) with talos.config=<single-use URL>, the config
// machinery's own loader and validation accept (control plane, then
// worker, one secrets bundle), bootstraps etcd once through the first
// control plane's Talos API, and returns an admin kubeconfig signed by the
// bundle's Kubernetes CA.
func TestCreateTalos(t *testing.T) {
	l := newLab(t, 2, func(i int, s *Server) {
		if i == 0 {
			s.Role, s.Disk, s.Address = "control-plane", "/dev/vda", "127.0.0.1"
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	got := make(chan talosBoot, 2)
	for i, name := range []string{"s0", "s1"} {
		mac := fmt.Sprintf("52:54:00:00:00:%02x", i)
		l.bmcs[name].Replace(fakebmc.Options{Username: "admin", Password: "s3cret",
			Systems: []fakebmc.System{{ID: "1", Name: name, MAC: mac}},
			OnPower: talosFirmware(t, "http://"+addr, mac, got)})
	}
	kernel := filepath.Join(t.TempDir(), "vmlinuz-amd64")
	writeFile(t, kernel, strings.Repeat("k", 4000))
	mirror := "http://127.0.0.1:1/talos/v1.10.6/initramfs-amd64.xz" // iPXE's to fetch; nothing listens
	cfg := l.config(t, map[string]any{"bootAddress": addr, "bootTimeout": "20s", "talosBootstrapTimeout": "20s",
		"talosKernel": kernel, "talosInitramfs": mirror})
	env := "prod"
	apid := startFakeApid(t, func() *secrets.Bundle {
		b, err := secrets.LoadBundle(filepath.Join(l.stateDir, "talos", env, "secrets.yaml"))
		if err != nil {
			t.Errorf("fake apid: %v", err)
		}
		return b
	})
	_, port, _ := net.SplitHostPort(apid.addr)
	p := newTestProvider()
	fmt.Sscan(port, &p.talosPort)
	boot := sdk.Bootstrap{Method: sdk.BootstrapNetworkBoot, OS: sdk.OSTalos, OSVersion: "v1.10.6", KubernetesVersion: "v1.32.3"}
	// Over the plugin wire (gRPC), as k2 calls it: the OS fields go in,
	// the kubeconfig comes back.
	wire := providertest.Connect(t, func() sdk.Provider { return p })

	create := func(name, role string) (*sdk.CreateResponse, []string) {
		t.Helper()
		var mu sync.Mutex
		var progress []string
		m := sdk.MachineRequest{Name: name, Role: role, Arch: "amd64", Labels: map[string]string{sdk.LabelEnvironment: env, "k2.dev/pool": role}}
		resp, err := wire.Create(context.Background(), &sdk.CreateRequest{RequestID: "r-" + name, Config: cfg, Machines: []sdk.MachineRequest{m}, Bootstrap: boot,
			OnProgress: func(pr sdk.Progress) { mu.Lock(); progress = append(progress, pr.Message); mu.Unlock() }})
		if err != nil || resp.Diagnostics.HasErrors() {
			t.Fatalf("Create %s: %v %v", name, err, resp.Diagnostics.Err())
		}
		return resp, progress
	}

	resp, progress := create("prod-cp-0", "control-plane")
	m := resp.Machines[0]
	t.Logf("%s: %s\n%s", m.State, m.Message, strings.Join(progress, "\n"))
	if m.State != sdk.StateRunning || !strings.Contains(m.Message, "booted Talos v1.10.6") || !strings.Contains(m.Message, "etcd bootstrapped through "+apid.addr) {
		t.Errorf("control plane: %s %q", m.State, m.Message)
	}
	cp := <-got
	// The script: Talos's kernel from k2, its initramfs from the mirror,
	// Talos's metal arguments and the single-use config URL.
	var kernelLine, initrdLine string
	for _, ln := range strings.Split(cp.script, "\n") {
		if strings.HasPrefix(ln, "kernel ") {
			kernelLine = ln
		}
		if strings.HasPrefix(ln, "initrd ") {
			initrdLine = ln
		}
	}
	wantKernel := "kernel http://" + addr + "/m/52-54-00-00-00-00/kernel initrd=initrd talos.platform=metal "
	if !strings.HasPrefix(kernelLine, wantKernel) || !strings.Contains(kernelLine, " talos.config=http://"+addr+"/c/") || strings.Contains(kernelLine, "k2.config") {
		t.Errorf("kernel line %q, want %q… talos.config=…", kernelLine, wantKernel)
	}
	if initrdLine != "initrd --name initrd "+mirror {
		t.Errorf("initrd line %q", initrdLine)
	}
	if cp.again != http.StatusGone {
		t.Errorf("the config URL fetched twice: %d, want 410", cp.again)
	}
	// The config: machinery loads and validates it.
	loaded, err := configloader.NewFromBytes([]byte(cp.config))
	if err != nil {
		t.Fatalf("machinery cannot load the served config: %v\n%s", err, cp.config)
	}
	if _, err := loaded.Validate(talosMode{}); err != nil {
		t.Errorf("machinery refuses the served config: %v", err)
	}
	if got := loaded.Machine().Type().String(); got != "controlplane" {
		t.Errorf("machine type %s", got)
	}
	if got := loaded.Machine().Install().Disk(); got != "/dev/vda" {
		t.Errorf("install disk %q, want the inventory's /dev/vda", got)
	}
	if got := loaded.Cluster().Endpoint().String(); got != "https://127.0.0.1:6443" {
		t.Errorf("endpoint %s, want the control-plane server's address", got)
	}
	if got := loaded.Machine().Network().Hostname(); got != "prod-cp-0" {
		t.Errorf("hostname %q", got)
	}
	// Etcd bootstrapped once, by an admin (os:admin) client certificate.
	if calls := apid.Calls(); len(calls) != 1 || calls[0] != "os:admin" {
		t.Errorf("Bootstrap calls %q, want one by os:admin", calls)
	}
	// The kubeconfig: the endpoint, a client certificate of
	// system:masters signed by the bundle's Kubernetes CA.
	kc, err := clientcmd.Load(resp.Kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	cur := kc.Contexts[kc.CurrentContext]
	if kc.Clusters[cur.Cluster].Server != "https://127.0.0.1:6443" {
		t.Errorf("kubeconfig server %s", kc.Clusters[cur.Cluster].Server)
	}
	bundle, _ := secrets.LoadBundle(filepath.Join(l.stateDir, "talos", env, "secrets.yaml"))
	pool := stdx509.NewCertPool()
	pool.AppendCertsFromPEM(bundle.Certs.K8s.Crt)
	pair, err := tls.X509KeyPair(kc.AuthInfos[cur.AuthInfo].ClientCertificateData, kc.AuthInfos[cur.AuthInfo].ClientKeyData)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := stdx509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(stdx509.VerifyOptions{Roots: pool, KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth}}); err != nil || !slices.Contains(leaf.Subject.Organization, "system:masters") {
		t.Errorf("kubeconfig client certificate: %v, organizations %v", err, leaf.Subject.Organization)
	}

	// A worker: its own config of the same cluster, no second bootstrap.
	resp, _ = create("prod-w-0", "worker")
	w := <-got
	wl, err := configloader.NewFromBytes([]byte(w.config))
	if err != nil {
		t.Fatalf("worker config: %v", err)
	}
	if wl.Machine().Type().String() != "worker" || wl.Machine().Install().Disk() != "/dev/sda" {
		t.Errorf("worker: type %s, disk %s", wl.Machine().Type(), wl.Machine().Install().Disk())
	}
	if string(wl.Cluster().IssuingCA().Crt) != string(bundle.Certs.K8s.Crt) {
		t.Error("the worker's config is of another cluster (another Kubernetes CA)")
	}
	if calls := apid.Calls(); len(calls) != 1 {
		t.Errorf("Bootstrap called %d times, want once per cluster", len(calls))
	}
	if len(resp.Kubeconfig) == 0 {
		t.Error("no kubeconfig with the worker")
	}

	// Deleting the environment's servers removes its Talos cluster with
	// the last one: a new environment of that name is a new cluster.
	dir := filepath.Join(l.stateDir, "talos", env)
	for i, id := range []string{"metal-s0", "metal-s1"} {
		d, err := wire.Delete(context.Background(), &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{id}})
		if err != nil || d.Diagnostics.HasErrors() {
			t.Fatalf("Delete %s: %v %v", id, err, d.Diagnostics.Err())
		}
		if _, err := os.Stat(dir); (err == nil) != (i == 0) {
			t.Errorf("after deleting %s: %s exists = %v", id, dir, err == nil)
		}
	}
}

// TestCreateTalosRefusals: what machinery refuses reaches the user verbatim
// with the machine named, before any BMC is called; an inventory disk that
// is not a device path, and an OS talos config without the Talos kernel,
// are refused with what to set.
func TestCreateTalosRefusals(t *testing.T) {
	l := newLab(t, 1, func(_ int, s *Server) { s.Address = "127.0.0.1" })
	kernel := filepath.Join(t.TempDir(), "vmlinuz-amd64")
	writeFile(t, kernel, "k")
	cfg := l.config(t, map[string]any{"bootAddress": "127.0.0.1:0", "bootTimeout": "0s", "talosKernel": kernel, "talosInitramfs": kernel})
	boot := sdk.Bootstrap{Method: sdk.BootstrapNetworkBoot, OS: sdk.OSTalos, OSVersion: "v1.10.6", KubernetesVersion: "v1.32.3"}
	m := sdk.MachineRequest{Name: "prod-cp-0", Role: "control-plane", Labels: map[string]string{sdk.LabelEnvironment: "prod", "k2.dev/pool": "not a label value!"}}
	resp, err := newTestProvider().Create(context.Background(), &sdk.CreateRequest{RequestID: "r1", Config: cfg, Machines: []sdk.MachineRequest{m}, Bootstrap: boot})
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.Diagnostics.Err()
	t.Log(msg)
	if msg == nil || !strings.Contains(msg.Error(), "invalid Talos machine config of machine prod-cp-0") || !strings.Contains(msg.Error(), `label value "not a label value!" is invalid`) {
		t.Errorf("diagnostics %v, want machinery's label message naming prod-cp-0", msg)
	}
	for _, c := range l.bmcs["s0"].Calls() {
		if c.Method != "GET" {
			t.Errorf("the BMC was called: %s %s", c.Method, c.Path)
		}
	}

	// The inventory: a disk that is not a device path.
	inv := Inventory{Machines: []Server{{Name: "s9", MAC: "52:54:00:00:00:09", Arch: "amd64", Disk: "sda",
		BMC: BMC{Endpoint: l.urls["s0"], Username: "admin", PasswordFile: l.pwFile}}}}
	bad := filepath.Join(t.TempDir(), "inventory.yaml")
	writeInventory(t, bad, inv)
	_, err = LoadInventory(bad)
	if err == nil || !strings.Contains(err.Error(), `machines[0] (s9): disk "sda" is not a device path`) {
		t.Errorf("inventory with disk sda: %v", err)
	}

	// The config: OS talos without the Talos initramfs, or a version
	// machinery does not know.
	noInitrd := l.config(t, map[string]any{"bootAddress": "127.0.0.1:0", "talosKernel": kernel})
	v, _ := newTestProvider().Validate(context.Background(), &sdk.ValidateRequest{Config: noInitrd, Machines: []sdk.MachineRequest{{Name: "a"}}, Bootstrap: &boot})
	if !hasDiag(v.Diagnostics, "config.talosInitramfs", "set talosInitramfs") {
		t.Errorf("no talosInitramfs diagnostic: %v", v.Diagnostics)
	}
	bad2 := boot
	bad2.OSVersion = "banana"
	v, _ = newTestProvider().Validate(context.Background(), &sdk.ValidateRequest{Config: cfg, Machines: []sdk.MachineRequest{{Name: "a"}}, Bootstrap: &bad2})
	if !hasDiag(v.Diagnostics, "bootstrap.osVersion", "banana") {
		t.Errorf("no osVersion diagnostic: %v", v.Diagnostics)
	}
}

func hasDiag(ds sdk.Diagnostics, path, text string) bool {
	for _, d := range ds {
		if d.Path == path && strings.Contains(d.Summary+d.Detail, text) {
			return true
		}
	}
	return false
}
