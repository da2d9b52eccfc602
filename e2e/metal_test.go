package e2e

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/internal/libvirttest"
)

// metalServer is one "physical server" of TestMetalNetworkBoot: a libvirt
// domain with an empty disk whose power button is a fake BMC.
type metalServer struct {
	name, mac, disk, console string
	bmc                      *fakebmc.BMC
	endpoint                 string
	mu                       sync.Mutex
	poweredOn                time.Time
	boots                    []string // the boot device of each power-on
}

// domainXML is the server's domain, booting from dev ("network" or "hd")
// the way a one-time override sets a real server's next boot.
func (s *metalServer) domainXML(dev string) string {
	return fmt.Sprintf(`<domain type='qemu'>
  <name>%s</name>
  <memory unit='MiB'>2560</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='%s'/></os>
  <features><acpi/><apic/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw' cache='unsafe'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>
    <interface type='network'><mac address='%s'/><source network='%s'/><model type='virtio'/></interface>
    <serial type='pty'><log file='%s' append='on'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>`, s.name, dev, s.disk, s.mac, metalNet, s.console)
}

// metalNet is the libvirt network the servers boot on: libvirt's dnsmasq
// gives each an address and points PXE at k2's TFTP on the bridge.
const (
	metalNet = "metal"
	metalGW  = "192.168.160.1"
)

// TestMetalNetworkBoot deploys `MACHINES control-plane=1 worker=1` with
// `--provider metal` to two "physical servers" with empty disks: libvirt
// domains (TCG) in a private libvirtd's network namespace (libvirttest),
// each powered by its own fake BMC (internal/fakebmc, listening inside that
// namespace): power on = start the domain, a one-time Pxe override =
// network boot first. Each server boots the real path: SeaBIOS's iPXE ROM
// takes a lease from libvirt's dnsmasq (bootp: undionly.kpxe on the
// bridge's address), Debian's undionly.kpxe from k2's TFTP, then its
// script, k2 OS's kernel and initramfs and its machine config over k2's
// HTTP, and joins. k2 deploy and kubectl run in the namespace. Then: 2
// Ready nodes, the App's pods Running (one on the worker), k2 status lists
// both servers with the addresses they booted from; k2 destroy powers both
// off through their BMCs and releases the claims. It logs each server's
// boot stages, power-on → node Ready and the bytes served.
func TestMetalNetworkBoot(t *testing.T) {
	requireVMs(t)
	if os.Getenv("K2_METAL_E2E") == "" {
		t.Skip("metal network-boot VM test: set K2_METAL_E2E=1 (make test-vm does)")
	}
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		t.Fatalf("Debian's ipxe is missing (.ci/run installs ipxe): %v", err)
	}
	d := libvirttest.Start(t)
	home := t.TempDir()
	const env = "mt"
	dir := t.TempDir()

	// The servers' network: isolated (nothing leaves the namespace).
	netXML := filepath.Join(dir, "net.xml")
	os.WriteFile(netXML, []byte(fmt.Sprintf(`<network><name>%s</name><bridge name='k2metal0'/>
  <ip address='%s' netmask='255.255.255.0'><dhcp><range start='192.168.160.100' end='192.168.160.199'/>
  <bootp file='undionly.kpxe' server='%s'/></dhcp></ip></network>`, metalNet, metalGW, metalGW)), 0o644)
	for _, args := range [][]string{{"net-define", netXML}, {"net-start", metalNet}} {
		if out, err := d.Virsh("qemu", args...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}

	// Two servers, each with its own BMC; passwords only in a file.
	pwFile := filepath.Join(dir, "bmc-password")
	os.WriteFile(pwFile, []byte("s3cret"), 0o600)
	var servers []*metalServer
	var inv strings.Builder
	inv.WriteString("machines:\n")
	for i, role := range []string{"control-plane", "worker"} {
		s := &metalServer{name: fmt.Sprintf("rack1-u%d", i+1), mac: fmt.Sprintf("52:54:00:16:00:%02x", i+1)}
		s.disk = filepath.Join(dir, s.name+".raw")
		s.console = filepath.Join(dir, s.name+".console.log")
		if err := os.WriteFile(s.disk, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(s.disk, 4<<30) // empty: nothing to boot from
		s.bmc = fakebmc.New(fakebmc.Options{Username: "admin", Password: "s3cret",
			Systems: []fakebmc.System{{ID: "1", Name: s.name, Manufacturer: "QEMU", Model: "TCG", SerialNumber: fmt.Sprintf("E2E-%d", i+1), MAC: s.mac, PowerState: "Off"}},
			OnPower: func(_, state, target string) error { return s.power(d, state, target) }})
		ln, err := d.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(s.bmc)
		srv.Listener.Close()
		srv.Listener = ln
		srv.Start()
		t.Cleanup(srv.Close)
		s.endpoint = srv.URL
		servers = append(servers, s)
		fmt.Fprintf(&inv, "  - name: %s\n    bmc: {endpoint: %q, username: admin, passwordFile: %q}\n    mac: %q\n    arch: amd64\n    role: %s\n    cpu: 2\n    memory: 2560Mi\n",
			s.name, s.endpoint, pwFile, s.mac, role)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range servers {
				b, _ := os.ReadFile(s.console)
				t.Logf("== console of %s (tail)\n%s", s.name, lastLines(string(b), 80))
			}
		}
	})
	invFile := filepath.Join(dir, "inventory.yaml")
	os.WriteFile(invFile, []byte(inv.String()), 0o644)

	// A check of every BMC, as an operator would before deploying.
	// (in the namespace: the BMCs listen on its loopback)
	var check lvDeploy
	if code, _ := runLV(t, d, home, &check, nil, "metal", "inventory", "check", invFile, "-o", "json"); code != 0 || strings.Count(check.String(), `"Off"`) != 2 {
		t.Errorf("k2 metal inventory check: exit %d; want both servers Off:\n%s", code, check.String())
	}

	img := buildOS(t, "fast") // over the network the bytes cost more than unpacking them
	buildVMWebArtifact(t, home, "mt:v1")

	cfg, _ := json.Marshal(map[string]any{"inventory": invFile, "image": img, "bootMode": "legacy",
		"bootAddress": metalGW + ":8081", "tftpAddress": metalGW + ":69", "kernelArgs": vmCmdline, "bootTimeout": "10m"})
	cfgFile := filepath.Join(home, "metal.json")
	os.WriteFile(cfgFile, cfg, 0o600)
	mustK2(t, home, "env", "create", env, "--provider", "metal", "--provider-config", cfgFile)

	var out lvDeploy
	t0 := time.Now()
	if code, _ := runLV(t, d, home, &out, nil, "deploy", "mt:v1", "--env", env, "--timeout", lvTimeout); code != 0 {
		t.Fatalf("k2 deploy: exit %d\n%s", code, out.String())
	}
	t.Logf("k2 deploy --provider metal (1 control plane + 1 worker, TCG): %s", time.Since(t0).Round(time.Second))

	// Boot stages per server, from the deploy's progress.
	stageRE := regexp.MustCompile(`boot stage (\S+) after (\S+)`)
	for _, m := range []string{env + "-control-plane-0", env + "-worker-0"} {
		var stages []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, m) {
				if sm := stageRE.FindStringSubmatch(l); sm != nil {
					stages = append(stages, sm[1]+" "+sm[2])
				}
			}
		}
		t.Logf("%s boot stages (after power-on): %s", m, strings.Join(stages, ", "))
		for _, st := range []string{"tftp", "script", "kernel", "initramfs", "config"} {
			if !strings.Contains(strings.Join(stages, " "), st+" ") {
				t.Errorf("%s: boot stage %s not reported:\n%s", m, st, out.String())
			}
		}
	}
	for _, s := range servers {
		s.mu.Lock()
		if len(s.boots) != 1 || s.boots[0] != "network" {
			t.Errorf("%s powered on %d times, from %v; want once, from the network", s.name, len(s.boots), s.boots)
		}
		s.mu.Unlock()
		if !strings.Contains(readFile(t, s.console), "machine config found") {
			t.Errorf("%s: k2 init found no machine config", s.name)
		}
	}

	// Both nodes Ready; the App's pods Running, one at least on the worker.
	eventually(t, 3*time.Minute, "2 Ready nodes and the App's 2 pods Running", func() error {
		nodes, err := kubectlLV(d, home, env, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return fmt.Errorf("kubectl get nodes: %w: %s", err, nodes)
		}
		if strings.Count(nodes, "=True") != 2 {
			return fmt.Errorf("nodes: %s", nodes)
		}
		pods, err := kubectlLV(d, home, env, "get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}={.status.phase} {end}`)
		if err != nil {
			return fmt.Errorf("kubectl get pods: %w: %s", err, pods)
		}
		running, onWorker := 0, 0
		for _, p := range strings.Fields(pods) {
			if f := strings.Split(p, "="); len(f) == 3 && strings.HasPrefix(f[0], "web-") && f[2] == "Running" {
				running++
				if f[1] == env+"-worker-0" {
					onWorker++
				}
			}
		}
		if running != 2 || onWorker == 0 {
			return fmt.Errorf("web pods: want 2 Running, one at least on the worker: %s", pods)
		}
		return nil
	})
	nodesJSON, _ := kubectlLV(d, home, env, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\n"}{end}`)
	for _, l := range strings.Split(strings.TrimSpace(nodesJSON), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		at, _ := time.Parse(time.RFC3339, f[1])
		for i, s := range servers {
			if f[0] == []string{env + "-control-plane-0", env + "-worker-0"}[i] {
				s.mu.Lock()
				t.Logf("%s (%s): power-on → node Ready %s", f[0], s.name, at.Sub(s.poweredOn.Truncate(time.Second)).Round(time.Second))
				s.mu.Unlock()
			}
		}
	}
	// Bytes served, from the boot server's log of every request.
	served := map[string]int{}
	reqRE := regexp.MustCompile(`boot request\\?"? mac=\\?"?([0-9a-f:]*)\\?"? remote=\S+ proto=(\w+) .* bytes=(\d+)`)
	for _, l := range strings.Split(out.String(), "\n") {
		if sm := reqRE.FindStringSubmatch(l); sm != nil {
			n, _ := strconv.Atoi(sm[3])
			key := sm[1]
			if key == "" {
				key = sm[2] + " (by address)"
			}
			served[key] += n
		}
	}
	for _, s := range servers {
		if served[s.mac] < 1<<20 {
			t.Errorf("%s: %d bytes served over HTTP, want its kernel and initramfs", s.name, served[s.mac])
		}
	}
	t.Logf("bytes served: %v", served)

	// k2 status: both servers, with the addresses they booted from.
	var st struct {
		Machines []struct {
			Name, ProviderID string
			Addresses        []string
		}
	}
	r := mustK2(t, home, "status", env, "-o", "json")
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("k2 status -o json: %v\n%s", err, r.Stdout)
	}
	leases, _ := d.Virsh("qemu", "net-dhcp-leases", metalNet)
	if len(st.Machines) != 2 {
		t.Errorf("k2 status: %d machines, want 2:\n%s", len(st.Machines), r.Stdout)
	}
	for _, m := range st.Machines {
		if len(m.Addresses) == 0 || !strings.Contains(leases, m.Addresses[0]+"/") || !strings.HasPrefix(m.ProviderID, "metal-rack1-u") {
			t.Errorf("k2 status: machine %s: id %q, addresses %v; dnsmasq's leases:\n%s", m.Name, m.ProviderID, m.Addresses, leases)
		}
	}

	// Destroy: both powered off through their BMCs, the claims released.
	if code, _ := runLV(t, d, home, &out, nil, "destroy", env, "--yes"); code != 0 {
		t.Fatalf("k2 destroy: exit %d\n%s", code, out.String())
	}
	for _, s := range servers {
		if sys, _ := s.bmc.System("1"); sys.PowerState != "Off" {
			t.Errorf("%s: BMC power %s after destroy", s.name, sys.PowerState)
		}
	}
	if doms := virshNames(t, d, "list", "--name"); len(doms) != 0 {
		t.Errorf("domains still running after destroy: %v", doms)
	}
	if b, err := os.ReadFile(filepath.Join(home, "metal", "claims.json")); err != nil || strings.Contains(string(b), "rack1-u") {
		t.Errorf("claims after destroy: %v\n%s", err, b)
	}
}

// power is the BMC's power button: the domain is (re)defined with the boot
// device the override chose, then started; or it is stopped.
func (s *metalServer) power(d *libvirttest.Daemon, state, target string) error {
	if _, err := d.Virsh("qemu", "domstate", s.name); err == nil {
		d.Virsh("qemu", "destroy", s.name) // off first (an error: it was off)
	}
	if state == "Off" {
		return nil
	}
	dev := "hd"
	if target == "Pxe" {
		dev = "network"
	}
	xmlFile := s.disk + "." + dev + ".xml"
	if err := os.WriteFile(xmlFile, []byte(s.domainXML(dev)), 0o644); err != nil {
		return err
	}
	if out, err := d.Virsh("qemu", "define", xmlFile); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	s.mu.Lock()
	s.poweredOn = time.Now()
	s.boots = append(s.boots, dev)
	s.mu.Unlock()
	if out, err := d.Virsh("qemu", "start", s.name); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, _ := os.ReadFile(p)
	return string(b)
}
