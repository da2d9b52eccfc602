// Package ec2boot boots ec2fake instances as real machines, for tests: each
// instance is a network namespace with a veth to a bridge this package
// creates in the host namespace (its address is the subnet's first, the
// "VPC router"), an instance metadata endpoint at 169.254.169.254:80 inside
// the namespace serving that instance's ec2fake.IMDSHandler (IMDSv2 token
// flow), and, for k2 OS images, `k2 init` running non-PID-1 in the
// namespace — so the k2 OS bootstrap path (k2 init reads its machine config
// from IMDS user-data, then runs k2 server or k2 agent) really runs.
//
// It is not a VM: machines share the host's kernel, file system and
// processes; instances of cloud-init images are refused (there is no
// cloud-init to run their user-data). Needs root, iproute2 and nsenter.
// Only tests import it.
package ec2boot

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/internal/netns"
)

// Options configure a Booter.
type Options struct {
	// K2Binary is the k2 executable instances run.
	K2Binary string
	// Dir holds one directory per instance (console, data); required.
	Dir string
	// Env is added to the environment of k2 init.
	Env []string
	// Command, if set, replaces `k2 init …` (for tests of the booter):
	// it gets the instance and its directory and returns an argv.
	Command func(m ec2fake.Machine, dir string) []string
	// StopGrace is how long Stop waits after SIGTERM; default 20s.
	StopGrace time.Duration
}

// Booter implements ec2fake.Booter. Create it with New, pass it as
// ec2fake.Options.Booter, and Close it at the end of the test.
type Booter struct {
	o      Options
	id     string
	bridge string
	subnet netip.Prefix

	mu       sync.Mutex
	machines map[string]*machine
}

// Usable says why ec2boot cannot run here, or "".
func Usable() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " not found (Debian: apt-get install iproute2 util-linux)"
		}
	}
	return ""
}

// New creates the bridge of a fresh /24 that no host route covers, and
// returns the Booter with that subnet: give it to ec2fake as SubnetCIDR.
func New(o Options) (*Booter, error) {
	if why := Usable(); why != "" {
		return nil, errors.New(why)
	}
	if o.StopGrace == 0 {
		o.StopGrace = 20 * time.Second
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	bt := &Booter{o: o, id: hex.EncodeToString(b), machines: map[string]*machine{}}
	bt.bridge = "k2e" + bt.id
	routes, _ := exec.Command("ip", "-4", "route", "show").Output()
	for i := 0; ; i++ {
		if i == 500 {
			return nil, errors.New("no free 10.x.y.0/24 for the fake VPC")
		}
		sub := fmt.Sprintf("10.%d.%d.0/24", 200+int(b[0]+byte(i))%50, int(b[1])+i%200)
		if !strings.Contains(string(routes), sub) {
			bt.subnet = netip.MustParsePrefix(sub)
			break
		}
	}
	gw := bt.Gateway().String() + "/24"
	for _, args := range [][]string{
		{"link", "add", bt.bridge, "type", "bridge"},
		{"addr", "add", gw, "dev", bt.bridge},
		{"link", "set", bt.bridge, "up"},
	} {
		if err := ip(args...); err != nil {
			bt.Close()
			return nil, err
		}
	}
	return bt, nil
}

// Subnet is the fake VPC's subnet (a /24 on the bridge).
func (b *Booter) Subnet() netip.Prefix { return b.subnet }

// Gateway is the bridge's address: the subnet's first.
func (b *Booter) Gateway() netip.Addr { return b.subnet.Addr().Next() }

// Close stops every machine and removes the namespaces and the bridge.
func (b *Booter) Close() {
	b.mu.Lock()
	ms := make([]*machine, 0, len(b.machines))
	for _, m := range b.machines {
		ms = append(ms, m)
	}
	b.mu.Unlock()
	for _, m := range ms {
		_ = m.Stop()
	}
	_ = ip("link", "del", b.bridge)
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// machine is one booted instance.
type machine struct {
	b       *Booter
	id      string
	node    string // the node name k2 init's agent registers (the Name tag)
	ns      string
	veth    string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	imds    net.Listener
	stopped sync.Once
}

// Boot makes the instance's namespace, its metadata endpoint and starts
// k2 init in it.
func (b *Booter) Boot(m ec2fake.Machine) (ec2fake.Running, error) {
	if m.Boot != ec2fake.BootK2OS && b.o.Command == nil {
		return nil, fmt.Errorf("ec2boot boots k2 OS images only; %s is a %s image and nothing here runs cloud-init", m.ImageID, m.Boot)
	}
	h := sha256.Sum256([]byte(b.id + m.InstanceID))
	mc := &machine{b: b, id: m.InstanceID, node: m.Tags["Name"], ns: "k2e-" + b.id + "-" + m.InstanceID[2:10], veth: "k2x" + hex.EncodeToString(h[:])[:10],
		dir: filepath.Join(b.o.Dir, m.InstanceID), exited: make(chan struct{})}
	if err := os.MkdirAll(mc.dir, 0o755); err != nil {
		return nil, err
	}
	if err := mc.network(m); err != nil {
		mc.teardown()
		return nil, err
	}
	if err := mc.serveIMDS(m.IMDS); err != nil {
		mc.teardown()
		return nil, err
	}
	argv := []string{b.o.K2Binary, "init", "--imds-endpoint", "http://169.254.169.254",
		"--data-dir", filepath.Join(mc.dir, "data"), "--socket", filepath.Join(mc.dir, "init.sock")}
	if b.o.Command != nil {
		argv = b.o.Command(m, mc.dir)
	}
	console, err := os.OpenFile(filepath.Join(mc.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		mc.teardown()
		return nil, err
	}
	defer console.Close()
	mc.cmd = exec.Command("nsenter", append([]string{"--net=/run/netns/" + mc.ns, "--"}, argv...)...)
	mc.cmd.Dir = mc.dir
	mc.cmd.Env = append(machineEnv(), b.o.Env...)
	mc.cmd.Stdout, mc.cmd.Stderr = console, console
	mc.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(console, "ec2boot: booting %s (%s) at %s in netns %s: %s\n", m.InstanceID, m.ImageID, m.PrivateIP, mc.ns, strings.Join(argv, " "))
	if err := mc.cmd.Start(); err != nil {
		mc.teardown()
		return nil, err
	}
	go func() { _ = mc.cmd.Wait(); close(mc.exited) }()
	b.mu.Lock()
	b.machines[m.InstanceID] = mc
	b.mu.Unlock()
	return mc, nil
}

// machineEnv is the environment of a machine's processes: the host's,
// without what belongs to the test (an instance is "on EC2").
func machineEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "K2_") || strings.HasPrefix(k, "PLUGIN_") || k == "KUBECONFIG" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// network creates the namespace with eth0 on the bridge at the instance's
// private address, a default route through the gateway, and the metadata
// address on lo.
func (mc *machine) network(m ec2fake.Machine) error {
	bits := m.Subnet.Bits()
	for _, args := range [][]string{
		{"netns", "add", mc.ns},
		{"link", "add", mc.veth, "type", "veth", "peer", "name", "eth0", "netns", mc.ns},
		{"link", "set", mc.veth, "master", mc.b.bridge, "up"},
		{"-n", mc.ns, "addr", "add", fmt.Sprintf("%s/%d", m.PrivateIP, bits), "dev", "eth0"},
		{"-n", mc.ns, "link", "set", "eth0", "up"},
		{"-n", mc.ns, "link", "set", "lo", "up"},
		{"-n", mc.ns, "addr", "add", "169.254.169.254/32", "dev", "lo"},
		{"-n", mc.ns, "route", "add", "default", "via", mc.b.Gateway().String()},
	} {
		if err := ip(args...); err != nil {
			return err
		}
	}
	return nil
}

// serveIMDS listens on 169.254.169.254:80 inside the namespace (the socket
// is made there by a thread switched into it) and serves h on it.
func (mc *machine) serveIMDS(h http.Handler) error {
	l, err := netns.Listen("/run/netns/"+mc.ns, "169.254.169.254:80")
	if err != nil {
		return fmt.Errorf("serving IMDS in %s: %w", mc.ns, err)
	}
	mc.imds = l
	go func() { _ = (&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}).Serve(l) }()
	return nil
}

// Stop stops k2 init (SIGTERM: it stops its children cleanly; SIGKILL of
// the session after StopGrace) and removes the namespace.
func (mc *machine) Stop() error {
	mc.stopped.Do(func() {
		if mc.cmd != nil && mc.cmd.Process != nil {
			_ = syscall.Kill(-mc.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-mc.exited:
			case <-time.After(mc.b.o.StopGrace):
				mc.note("ec2boot: %s did not stop within %s; killing it\n", mc.id, mc.b.o.StopGrace)
				_ = syscall.Kill(-mc.cmd.Process.Pid, syscall.SIGKILL)
				<-mc.exited
				mc.cleanupAgent()
			}
			_ = syscall.Kill(-mc.cmd.Process.Pid, syscall.SIGKILL)
		}
		mc.teardown()
		mc.b.mu.Lock()
		delete(mc.b.machines, mc.id)
		mc.b.mu.Unlock()
	})
	return nil
}

// cleanupAgent removes what a killed kubelet agent left (shims,
// containers, mounts, cgroups), as the local provider does: `k2 agent
// cleanup` in the machine's namespace.
func (mc *machine) cleanupAgent() {
	agentDir := filepath.Join(mc.dir, "data", "agent")
	if mc.b.o.Command != nil || mc.node == "" {
		return
	}
	if _, err := os.Stat(agentDir); err != nil {
		return
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+mc.ns, "--", mc.b.o.K2Binary, "agent", "cleanup",
		"--data-dir", agentDir, "--node-name", mc.node)
	cmd.Env = machineEnv()
	out, err := cmd.CombinedOutput()
	mc.note("ec2boot: k2 agent cleanup: %v\n%s", err, out)
}

// note appends a line of ec2boot's own to the machine's console.
func (mc *machine) note(format string, args ...any) {
	f, err := os.OpenFile(filepath.Join(mc.dir, "console.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format, args...)
}

func (mc *machine) teardown() {
	if mc.imds != nil {
		mc.imds.Close()
	}
	if _, err := os.Stat("/run/netns/" + mc.ns); err == nil {
		_ = ip("netns", "del", mc.ns)
	}
	if _, err := os.Stat("/sys/class/net/" + mc.veth); err == nil {
		_ = ip("link", "del", mc.veth)
	}
}

// Console is what k2 init wrote so far.
func (mc *machine) Console() []byte {
	b, _ := os.ReadFile(filepath.Join(mc.dir, "console.log"))
	return b
}
