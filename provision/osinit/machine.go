package osinit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/provision/machineconfig"
)

// ModuleList is the file in the image naming the modules to load at boot
// (written by `k2 os build`).
const ModuleList = "/etc/k2/modules"

// machine is what k2 init does as PID 1 of k2 OS: the system around the
// k2 processes.
type machine struct {
	r   *runner
	net *network

	mu       sync.Mutex
	disk     string // the data disk's device, once mounted
	diskPath string // where it is mounted
}

func newMachine(r *runner) *machine { return &machine{r: r} }

// prepareRoot mounts /proc and, on the initramfs's rootfs, makes a root
// runc can pivot_root from and runs /init again from there (switchRoot
// does not return then).
func (m *machine) prepareRoot() error {
	os.Setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
	os.Setenv("HOME", "/root")
	if err := os.MkdirAll("/proc", 0o555); err == nil {
		unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	}
	if os.Getenv(switchedEnv) == "" && onRootfs() {
		m.r.log.Info("k2 init started", "uptime", uptime())
		return fmt.Errorf("moving the root: %w", switchRoot("/newroot"))
	}
	m.r.log.Info("k2 init running", "uptime", uptime(), "root moved in", os.Getenv(switchedEnv))
	os.Unsetenv(switchedEnv)
	return nil
}

// components are the machine's parts for k2 init's base manager.
func (m *machine) components() []component.Component {
	m.net = newNetwork(m.r.log)
	return []component.Component{&system{m: m}, m.net, &power{m: m}}
}

// system makes a running system out of the initramfs: mounts, cgroups,
// kernel modules, sysctls. Problems are logged and the boot goes on: a
// machine that cannot load one module may still run.
type system struct{ m *machine }

func (s *system) Name() string               { return "system" }
func (s *system) Init(context.Context) error { return nil }
func (s *system) Stop(context.Context) error { return nil }
func (s *system) Start(ctx context.Context) error {
	log := s.m.r.log
	var errs []error
	for _, mt := range []struct{ src, dst, fs, data string }{
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"devpts", "/dev/pts", "devpts", "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/dev/shm", "tmpfs", "mode=1777"},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", "nsdelegate"},
		{"bpf", "/sys/fs/bpf", "bpf", ""},
	} {
		if err := mountOnce(mt.src, mt.dst, mt.fs, mt.data); err != nil {
			errs = append(errs, err)
		}
	}
	// The kubelet and containerd run the pods' cgroups below the root;
	// its controllers must be handed down.
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		var ctl []string
		for _, c := range strings.Fields(string(b)) {
			ctl = append(ctl, "+"+c)
		}
		if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte(strings.Join(ctl, " ")), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("enabling cgroup controllers: %w", err))
		}
	}
	unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF) // Ctrl-Alt-Del sends SIGINT: a clean reboot
	t := time.Now()
	n, err := loadModules(ctx, ModuleList)
	if err != nil {
		errs = append(errs, err)
	}
	log.Info("kernel modules loaded", "modules", n, "took", time.Since(t).Round(time.Millisecond))
	for k, v := range map[string]string{
		"net/ipv4/ip_forward":                 "1",
		"net/ipv6/conf/all/forwarding":        "1",
		"net/bridge/bridge-nf-call-iptables":  "1",
		"net/bridge/bridge-nf-call-ip6tables": "1",
		"kernel/panic":                        "10",
		"kernel/panic_on_oops":                "1",
		"vm/overcommit_memory":                "1",
		"fs/inotify/max_user_instances":       "8192",
		"fs/inotify/max_user_watches":         "524288",
	} {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			log.Debug("sysctl", "key", k, "err", err)
		}
	}
	if err := pivotRootWorks(); err != nil {
		errs = append(errs, fmt.Errorf("pivot_root does not work here, so no container can start: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("setting the machine up", "err", err)
	}
	return nil
}

func mountOnce(src, dst, fs, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, fs, unix.MS_NOSUID, data); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mounting %s on %s: %w", fs, dst, err)
	}
	return nil
}

// machineSettings applies what the config says about the machine: its
// network and host name; it is started once the network has an address
// (the server's certificate names the addresses it has when it starts).
type machineSettings struct {
	m   *machine
	cfg *machineconfig.Config
}

func (s *machineSettings) Name() string               { return "machine-settings" }
func (s *machineSettings) Init(context.Context) error { return nil }
func (s *machineSettings) Stop(context.Context) error { return nil }
func (s *machineSettings) Start(ctx context.Context) error {
	m, cfg := s.m, s.cfg
	if err := m.net.apply(ctx, cfg.Network); err != nil {
		return fmt.Errorf("configuring the network: %w", err)
	}
	host := cfg.Hostname()
	if host == "" {
		host = m.net.dhcpHostname()
	}
	if host == "" {
		host = m.net.defaultHostname()
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		m.r.log.Warn("setting the host name", "err", err)
	}
	os.WriteFile("/etc/hostname", []byte(host+"\n"), 0o644)
	os.WriteFile("/etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n127.0.1.1 "+host+"\n"), 0o644)
	if err := m.net.waitAddress(ctx, 2*time.Minute); err != nil {
		m.r.log.Warn("no address yet; starting anyway", "err", err)
	}
	if cfg.DataDisk == nil {
		m.r.log.Warn("no data disk in the machine config: " + m.r.o.DataDir + " is in memory and lost at power off")
	}
	return nil
}

// dataDisk formats (when empty) and mounts the data disk on dir, and
// unmounts it at the stop.
type dataDisk struct {
	m   *machine
	cfg *machineconfig.DataDisk
	dir string
}

func (d *dataDisk) Name() string                    { return "data-disk" }
func (d *dataDisk) Init(context.Context) error      { return nil }
func (d *dataDisk) Start(ctx context.Context) error { return d.m.mountDataDisk(ctx, d.cfg, d.dir) }
func (d *dataDisk) Stop(context.Context) error      { d.m.unmountDataDisk(); return nil }

// waitNetworkFor is what the network sources call before asking the
// network.
func (m *machine) waitNetworkFor(ctx context.Context) error {
	return m.net.waitAddress(ctx, 2*time.Minute)
}

func (m *machine) addresses() []string {
	if m.net == nil {
		return nil
	}
	return m.net.addresses()
}

func (m *machine) dataDisk() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.disk == "" {
		return ""
	}
	return m.disk + " on " + m.diskPath
}

// uptime is the time since the kernel started, from /proc/uptime.
func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	var secs float64
	fmt.Sscan(string(b), &secs)
	return time.Duration(secs * float64(time.Second)).Round(10 * time.Millisecond)
}
