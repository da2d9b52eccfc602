// Package libvirt is the built-in provider whose machines are libvirt
// virtual machines booting k2 OS. It speaks libvirt's RPC protocol
// directly (github.com/digitalocean/go-libvirt): no virsh, no cgo
// bindings, so k2 stays one static binary and reaches remote hypervisors
// (qemu+ssh://, qemu+tcp://) as well as the local one (qemu:///system). It
// is written only against providers/sdk, exactly like an external plugin.
//
// Per environment (the machine label k2.dev/environment) it makes, and
// labels with a metadata element (namespace MetadataNS) naming the
// environment and the request id:
//
//   - an isolated NAT network k2-<env>, unless the config names a network;
//     removed with the environment's last machine;
//   - per machine, a domain (the machine's name) that boots k2 OS's kernel
//     and initramfs directly (no boot loader, no disk image), with three
//     volumes in the storage pool: the data disk (sparse raw, the machine's
//     disk size, for k2 init's dataDisk), a NoCloud config volume (FAT,
//     label CIDATA, file user-data: Bootstrap.UserData as is) and the
//     serial console's log, written by virtlogd;
//   - per image, the kernel and the initramfs as volumes named by their
//     digest, uploaded once and shared by every machine that boots them;
//     removed when no domain boots them any more.
//
// The domain is defined (with its labels and the names of its volumes)
// before anything else is made for it, so a crashed Create leaves nothing
// its labels do not lead to: a retried Create finds the domain by name and
// request id and finishes it, and Delete removes what the domain lists.
package libvirt

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"k2.dev/k2/providers/sdk"
)

// Name is the provider's name.
const Name = "libvirt"

// MetadataNS is the XML namespace of the metadata element k2 puts on the
// domains and networks it makes.
const MetadataNS = "https://k2.dev/libvirt/v1"

// LabelEnvironment is the machine label that names the environment.
const LabelEnvironment = sdk.LabelEnvironment

// Domain types (config "domain_type").
const (
	DomainQEMU = "qemu" // emulation (TCG): runs anywhere, slowly
	DomainKVM  = "kvm"  // hardware virtualisation: needs /dev/kvm on the hypervisor
)

// Defaults of a machine that asks for no size.
const (
	defaultCPU    = 2
	defaultMemory = 2 << 30
	defaultDisk   = 20 << 30
)

// Provider is the libvirt provider.
type Provider struct {
	sdk.UnimplementedProvider
}

// New returns the libvirt provider.
func New() sdk.Provider { return &Provider{} }

var _ sdk.Provider = (*Provider)(nil)

var schema = []sdk.ConfigField{
	{Name: "uri", Type: sdk.TypeString, Default: "qemu:///system",
		Description: "libvirt URI: qemu:///system, qemu+ssh://user@host/system (ssh agent or ~/.ssh keys, ~/.ssh/known_hosts), qemu+tcp://host/system, test:///default (a fake hypervisor, for tests); ?socket=PATH for another socket"},
	{Name: "pool", Type: sdk.TypeString, Default: "default",
		Description: "storage pool of the volumes (a directory pool); \"default\" is made at /var/lib/libvirt/images when missing, as virt-install does"},
	{Name: "network", Type: sdk.TypeString,
		Description: "libvirt network of the machines; default: an isolated NAT network k2-<env> per environment, removed with its last machine"},
	{Name: "subnet", Type: sdk.TypeString,
		Description: "IPv4 /24 (or larger) of the network k2 makes, such as 192.168.150.0/24; default: the first free one from 192.168.200.0/24 on"},
	{Name: "domain_type", Type: sdk.TypeString, Default: DomainQEMU,
		Description: "qemu (emulation: works everywhere, slow) or kvm (hardware virtualisation; the hypervisor must offer it)"},
	{Name: "cpu_model", Type: sdk.TypeString,
		Description: "CPU model: host-passthrough, host-model, maximum (every feature the hypervisor can offer: with qemu, the instructions TCG emulates, such as AES-NI and AVX2, which Go's crypto and runtime use) or a named model (Haswell…); default host-passthrough with kvm, qemu's own with qemu"},
	{Name: "image", Type: sdk.TypeString, Default: "$K2_HOME/os",
		Description: "the k2 OS boot image: a directory written by 'k2 os build -o DIR', or an OCI reference pushed by 'k2 os push'"},
	{Name: "disk_cache", Type: sdk.TypeString,
		Description: "cache mode of the data disk: none, writeback, writethrough, directsync or unsafe (guest flushes ignored: fastest, loses data if the host crashes; for throwaway labs and tests); default the hypervisor's"},
	{Name: "kernel_args", Type: sdk.TypeString,
		Description: "extra kernel command line arguments, after the image's own"},
	{Name: "address_timeout", Type: sdk.TypeDuration, Default: "5m",
		Description: "how long Create waits for a machine's DHCP lease"},
	{Name: "shutdown_timeout", Type: sdk.TypeDuration, Default: "30s",
		Description: "how long power off waits for a clean shutdown (ACPI power button) before pulling the plug"},
	{Name: "poll_interval", Type: sdk.TypeDuration, Default: "1s",
		Description: "how often to look for DHCP leases and console output"},
}

func capabilities() sdk.Capabilities {
	return sdk.Capabilities{
		Architectures:    []string{"amd64"},
		CustomSizes:      true,
		MaxMachines:      64,
		BootstrapMethods: []string{sdk.BootstrapUserData},
		Power:            true,
		Console:          true,
		PersistentDisks:  true,
	}
}

// Describe returns the provider's capabilities and config schema.
func (p *Provider) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:         Name,
		Description:  "libvirt virtual machines (qemu/kvm, local or over ssh) booting k2 OS",
		Capabilities: capabilities(),
		ConfigSchema: schema,
	}, nil
}

// config is the provider configuration.
type config struct {
	URI             string `json:"uri"`
	Pool            string `json:"pool"`
	Network         string `json:"network"`
	Subnet          string `json:"subnet"`
	DomainType      string `json:"domain_type"`
	CPUModel        string `json:"cpu_model"`
	DiskCache       string `json:"disk_cache"`
	Image           string `json:"image"`
	KernelArgs      string `json:"kernel_args"`
	AddressTimeout  string `json:"address_timeout"`
	ShutdownTimeout string `json:"shutdown_timeout"`
	PollInterval    string `json:"poll_interval"`

	uri           *url.URL
	subnet        netip.Prefix
	addrTimeout   time.Duration
	stopTimeout   time.Duration
	poll          time.Duration
	imageIsDir    bool
	imageResolved string
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.+]*$`)

// load decodes and checks the config, filling defaults.
func load(c sdk.Config) (*config, sdk.Diagnostics) {
	ds := sdk.CheckConfig(schema, c)
	cfg := &config{}
	if err := c.Decode(cfg); err != nil {
		ds.Errorf("config", "%v", err)
		return cfg, ds
	}
	if cfg.URI == "" {
		cfg.URI = "qemu:///system"
	}
	if cfg.Pool == "" {
		cfg.Pool = "default"
	}
	if cfg.DomainType == "" {
		cfg.DomainType = DomainQEMU
	}
	if cfg.Image == "" {
		cfg.Image = "$K2_HOME/os"
	}
	u, err := url.Parse(cfg.URI)
	switch {
	case err != nil:
		ds.Errorf("config.uri", "%q is not a URI: %v", cfg.URI, err)
	default:
		cfg.uri = u
		driver, transport, _ := strings.Cut(u.Scheme, "+")
		switch {
		case driver != "qemu" && driver != "test":
			ds.Errorf("config.uri", "%q: k2 OS machines need the qemu driver (qemu:///system, qemu+ssh://user@host/system) or test:///default", cfg.URI)
		case !slices.Contains([]string{"", "unix", "ssh", "libssh", "libssh2", "tcp", "tls"}, transport):
			ds.Errorf("config.uri", "%q: transport %q: use qemu:///system, qemu+ssh://, qemu+tcp:// or qemu+tls://", cfg.URI, transport)
		case driver == "qemu" && u.Path != "/system":
			ds.Errorf("config.uri", "%q: k2 needs the system instance (…/system): a session instance cannot make NAT networks", cfg.URI)
		case (transport == "ssh" || transport == "tcp" || transport == "tls" || transport == "libssh" || transport == "libssh2") && u.Hostname() == "":
			ds.Errorf("config.uri", "%q names no host", cfg.URI)
		}
	}
	if !nameRE.MatchString(cfg.Pool) {
		ds.Errorf("config.pool", "%q is not a storage pool name", cfg.Pool)
	}
	if cfg.Network != "" && !nameRE.MatchString(cfg.Network) {
		ds.Errorf("config.network", "%q is not a network name", cfg.Network)
	}
	if cfg.Subnet != "" {
		p, err := netip.ParsePrefix(cfg.Subnet)
		switch {
		case err != nil || !p.Addr().Is4():
			ds.Errorf("config.subnet", "%q is not an IPv4 CIDR such as 192.168.150.0/24", cfg.Subnet)
		case p.Bits() > 24 || p.Bits() < 8:
			ds.Errorf("config.subnet", "%s: use a prefix from /8 to /24 (machines and DHCP need room)", cfg.Subnet)
		case cfg.Network != "":
			ds.Errorf("config.subnet", "subnet is for the network k2 makes; network %q is yours and has its own", cfg.Network)
		default:
			cfg.subnet = p.Masked()
		}
	}
	switch cfg.DomainType {
	case DomainQEMU, DomainKVM:
	default:
		ds.Errorf("config.domain_type", "domain type %q: use qemu (emulation) or kvm (hardware virtualisation)", cfg.DomainType)
	}
	if !slices.Contains([]string{"", "default", "none", "writeback", "writethrough", "directsync", "unsafe"}, cfg.DiskCache) {
		ds.Errorf("config.disk_cache", "%q: use none, writeback, writethrough, directsync or unsafe", cfg.DiskCache)
	}
	if cfg.CPUModel != "" && !regexp.MustCompile(`^[A-Za-z0-9][-A-Za-z0-9_.]*$`).MatchString(cfg.CPUModel) {
		ds.Errorf("config.cpu_model", "%q is not a CPU model name", cfg.CPUModel)
	}
	if strings.ContainsAny(cfg.KernelArgs, "\n\x00") {
		ds.Errorf("config.kernel_args", "kernel arguments must be one line")
	}
	cfg.addrTimeout, cfg.stopTimeout, cfg.poll = 5*time.Minute, 30*time.Second, time.Second
	if d, err := time.ParseDuration(cfg.AddressTimeout); err == nil && d > 0 {
		cfg.addrTimeout = d
	}
	if d, err := time.ParseDuration(cfg.ShutdownTimeout); err == nil && d >= 0 {
		cfg.stopTimeout = d
	}
	if d, err := time.ParseDuration(cfg.PollInterval); err == nil && d > 0 {
		cfg.poll = d
	}
	cfg.imageResolved, cfg.imageIsDir = resolveImage(cfg.Image)
	return cfg, ds
}

// resolveImage expands $K2_HOME (default ~/.k2) in an image setting and
// says whether it names a directory (a path) rather than an OCI
// reference.
func resolveImage(s string) (string, bool) {
	if strings.Contains(s, "$K2_HOME") {
		s = strings.ReplaceAll(s, "$K2_HOME", sdk.Home())
	}
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "~") {
		if rest, ok := strings.CutPrefix(s, "~/"); ok {
			if h, err := os.UserHomeDir(); err == nil {
				s = filepath.Join(h, rest)
			}
		}
		abs, err := filepath.Abs(s)
		if err == nil {
			s = abs
		}
		return s, true
	}
	if fi, err := os.Stat(s); err == nil && fi.IsDir() {
		abs, _ := filepath.Abs(s)
		return abs, true
	}
	return s, false
}

// Validate checks a config, its boot image's manifest and the machine
// requests. It does not connect: a libvirtd that cannot be reached is
// reported, with what to fix, by the first call that needs it.
func (p *Provider) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, req.Bootstrap)...)
	ds = append(ds, checkMachines(req.Machines)...)
	if !ds.HasErrors() {
		if _, err := openImage(ctx, cfg); err != nil {
			diagnose(&ds, "config.image", err)
		}
	}
	return &sdk.ValidateResponse{Diagnostics: ds}, nil
}

// checkMachines checks what libvirt itself needs of the requests: names
// usable as domain and volume names, sizes it can make.
func checkMachines(ms []sdk.MachineRequest) sdk.Diagnostics {
	var ds sdk.Diagnostics
	for i, m := range ms {
		p := fmt.Sprintf("machines[%d]", i)
		if m.Name != "" && (!nameRE.MatchString(m.Name) || len(m.Name) > 200) {
			ds.Errorf(p+".name", "%q cannot name a libvirt domain: use letters, digits, '-', '_' and '.'", m.Name)
		}
		if m.MemoryBytes != 0 && m.MemoryBytes < 256<<20 {
			ds.Errorf(p, "memory %d MiB is too little for k2 OS (at least 256 MiB; 2 GiB for a control plane)", m.MemoryBytes>>20)
		}
		if env := m.Labels[LabelEnvironment]; env != "" && !nameRE.MatchString(env) {
			ds.Errorf(p+".labels", "environment %q cannot name a libvirt network", env)
		}
	}
	return ds
}

// environment is a machine's environment (its k2.dev/environment label);
// machines without one (such as the conformance kit's) share "k2".
func environment(m sdk.MachineRequest) string {
	if e := m.Labels[LabelEnvironment]; e != "" {
		return e
	}
	return "k2"
}
