// Package metal is the built-in provider for physical servers with nothing
// on their disks: it takes servers from an inventory file, claims each for
// one environment, and boots them through their BMCs over Redfish (a
// one-time network-boot override, then power on) into k2 OS served by
// k2's own network boot server (internal/netboot: TFTP for iPXE, HTTP for
// the per-MAC iPXE script, kernel, initramfs and each machine's config at a
// single-use URL). Written only against providers/sdk, like any plugin.
//
// State: <stateDir>/claims.json (default $K2_HOME/metal) records which
// server each environment's machine holds, changed only under
// <stateDir>/lock; passwords are never written anywhere (the inventory
// names an environment variable or a file). Machine ids are
// "metal-<server name>". Delete powers the server off and releases it.
//
// See docs/metal.md.
package metal

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	talosconfig "github.com/siderolabs/talos/pkg/machinery/config"

	"k2.dev/k2/providers/sdk"
)

// Name is the provider's name.
const Name = "metal"

// Provider is the metal provider.
type Provider struct {
	sdk.UnimplementedProvider
	boot bootServers
	// Log receives the provider's log (nil: stderr, relayed by k2).
	Log *slog.Logger
	// retry overrides the BMC retry policy (tests).
	retry *retryPolicy
	// talosPort overrides the Talos API's port 50000 (tests).
	talosPort int
}

// New returns the metal provider.
func New() sdk.Provider { return &Provider{} }

var schema = []sdk.ConfigField{
	{Name: "inventory", Type: sdk.TypeString, Required: true,
		Description: "path of the inventory YAML listing the servers (docs/metal.md)"},
	{Name: "stateDir", Type: sdk.TypeString, Default: "$K2_HOME/metal",
		Description: "directory holding the servers' claims (which environment holds which server)"},
	{Name: "bootAddress", Type: sdk.TypeString,
		Description: "IP:port where k2's HTTP boot server listens while machines boot (e.g. 10.0.0.1:8081); empty: the site serves network boot and k2 only powers servers"},
	{Name: "bootURL", Type: sdk.TypeString,
		Description: "the boot server's URL as machines reach it (default http://<bootAddress>)"},
	{Name: "tftpAddress", Type: sdk.TypeString,
		Description: "IP:port of k2's TFTP server for iPXE (e.g. 10.0.0.1:69); empty: no TFTP (UEFI HTTP boot, or the site's TFTP)"},
	{Name: "ipxeDir", Type: sdk.TypeString, Default: "/usr/lib/ipxe",
		Description: "directory of the iPXE binaries served over TFTP (Debian's ipxe package)"},
	{Name: "proxyDHCP", Type: sdk.TypeBool,
		Description: "answer the PXE clients of the servers being booted with proxy DHCP (boot file and next-server, no address) beside the site's DHCP server, which keeps giving addresses; false: the site's DHCP sends PXE clients to k2 (docs/metal.md)"},
	{Name: "dhcpAddress", Type: sdk.TypeString, Default: "0.0.0.0:67",
		Description: "where proxy DHCP listens (IP:port); on port 67 it also answers PXE boot-server requests on 4011 of the same IP"},
	{Name: "dhcpInterface", Type: sdk.TypeString,
		Description: "network interface proxy DHCP listens and broadcasts on (e.g. eno1), the servers' network; empty: every interface"},
	{Name: "efiBootFile", Type: sdk.TypeString, Default: "ipxe.efi",
		Description: "iPXE binary proxy DHCP gives UEFI x64 PXE clients: ipxe.efi (iPXE's own drivers) or snponly.efi (the firmware's); BIOS clients get undionly.kpxe"},
	{Name: "image", Type: sdk.TypeString,
		Description: "directory of the k2 OS boot image ('k2 os build -o DIR'): the kernel and initramfs its k2os.json names (e.g. vmlinuz, initramfs.cpio.zst)"},
	{Name: "talosKernel", Type: sdk.TypeString,
		Description: "for OS talos artifacts: Talos's kernel (vmlinuz-amd64 of the version the artifact names), a path on this host or an http(s) URL of the site's mirror"},
	{Name: "talosInitramfs", Type: sdk.TypeString,
		Description: "for OS talos artifacts: Talos's initramfs (initramfs-amd64.xz), a path on this host or an http(s) URL of the site's mirror"},
	{Name: "talosEndpoint", Type: sdk.TypeString,
		Description: "for OS talos: the Kubernetes API endpoint (https://<VIP or name>:6443); default https://<the first control-plane server's inventory address>:6443"},
	{Name: "talosImageRegistry", Type: sdk.TypeString,
		Description: "for OS talos: the site's registry mirror every Talos and Kubernetes image is pulled from (host[:port][/path]); empty: the images' own registries"},
	{Name: "talosBootstrapTimeout", Type: sdk.TypeDuration, Default: "20m",
		Description: "for OS talos: how long Create waits for the first control plane's Talos API (port 50000, after it installed and rebooted) to take the etcd bootstrap"},
	{Name: "kernelArgs", Type: sdk.TypeString,
		Description: "kernel command line added after the image's own (k2os.json's cmdline)"},
	{Name: "bootMode", Type: sdk.TypeString, Default: "uefi",
		Description: "firmware boot mode for the override: uefi or legacy"},
	{Name: "httpBoot", Type: sdk.TypeBool,
		Description: "use UEFI HTTP boot (to the boot server's boot.ipxe) where the BMC offers it, else PXE"},
	{Name: "bootTimeout", Type: sdk.TypeDuration, Default: "15m",
		Description: "how long Create waits for a machine to fetch its config from the boot server; 0s: do not wait"},
	{Name: "bmcAttempts", Type: sdk.TypeInt, Default: "4",
		Description: "tries per BMC call for transient failures (no answer, 5xx), with exponential backoff"},
}

func capabilities() sdk.Capabilities {
	return sdk.Capabilities{
		Architectures:    []string{"amd64", "arm64"},
		CustomSizes:      true,
		BootstrapMethods: []string{sdk.BootstrapNetworkBoot},
		OperatingSystems: []string{sdk.OSK2, sdk.OSTalos},
		Power:            true,
		PersistentDisks:  true,
	}
}

// Describe names the provider, its capabilities and its config schema.
func (p *Provider) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:         Name,
		Description:  "physical servers from an inventory, powered through Redfish BMCs and network-booted (PXE/iPXE) by k2 into k2 OS or Talos",
		Capabilities: capabilities(),
		ConfigSchema: schema,
	}, nil
}

type config struct {
	Inventory   string  `json:"inventory"`
	StateDir    string  `json:"stateDir"`
	BootAddress string  `json:"bootAddress"`
	BootURL     string  `json:"bootURL"`
	TFTPAddress string  `json:"tftpAddress"`
	IPXEDir     string  `json:"ipxeDir"`
	Image       string  `json:"image"`
	KernelArgs  *string `json:"kernelArgs"`
	BootMode    string  `json:"bootMode"`
	HTTPBoot    bool    `json:"httpBoot"`
	ProxyDHCP   bool    `json:"proxyDHCP"`
	DHCPAddress string  `json:"dhcpAddress"`
	DHCPIface   string  `json:"dhcpInterface"`
	EFIBootFile string  `json:"efiBootFile"`

	TalosKernel           string `json:"talosKernel"`
	TalosInitramfs        string `json:"talosInitramfs"`
	TalosEndpoint         string `json:"talosEndpoint"`
	TalosImageRegistry    string `json:"talosImageRegistry"`
	TalosBootstrapTimeout string `json:"talosBootstrapTimeout"`
	BootTimeout           string `json:"bootTimeout"`
	BMCAttempts           int    `json:"bmcAttempts"`

	inv              *Inventory
	bootTimeout      time.Duration
	bootstrapTimeout time.Duration
}

// load decodes and checks the config and reads the inventory.
func load(c sdk.Config) (*config, sdk.Diagnostics) {
	ds := sdk.CheckConfig(schema, c)
	cfg := &config{}
	if err := c.Decode(cfg); err != nil {
		ds.Errorf("config", "%v", err)
		return cfg, ds
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(sdk.Home(), "metal")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		ds.Errorf("config.stateDir", "state directory %q must be an absolute path", cfg.StateDir)
	}
	if cfg.IPXEDir == "" {
		cfg.IPXEDir = "/usr/lib/ipxe"
	}
	if cfg.KernelArgs == nil {
		s := ""
		if cfg.Image != "" && cfg.manifest().Cmdline == "" || cfg.Image == "" && cfg.TalosKernel != "" {
			s = "console=tty0 console=ttyS0,115200"
		}
		cfg.KernelArgs = &s
	}
	switch cfg.BootMode {
	case "":
		cfg.BootMode = "uefi"
	case "uefi", "legacy":
	default:
		ds.Errorf("config.bootMode", "bootMode %q: use uefi or legacy", cfg.BootMode)
	}
	cfg.bootTimeout = 15 * time.Minute
	if cfg.BootTimeout != "" {
		if d, err := time.ParseDuration(cfg.BootTimeout); err == nil {
			cfg.bootTimeout = d
		}
	}
	cfg.bootstrapTimeout = 20 * time.Minute
	if d, err := time.ParseDuration(cfg.TalosBootstrapTimeout); err == nil {
		cfg.bootstrapTimeout = d
	}
	if e := cfg.TalosEndpoint; e != "" {
		if u, err := url.Parse(e); err != nil || u.Scheme != "https" || u.Host == "" {
			ds.Errorf("config.talosEndpoint", "talosEndpoint %q: write the Kubernetes API URL, e.g. https://10.0.0.10:6443", e)
		}
	}
	if cfg.DHCPAddress == "" {
		cfg.DHCPAddress = "0.0.0.0:67"
	}
	if cfg.ProxyDHCP {
		if cfg.BootAddress == "" || cfg.TFTPAddress == "" {
			ds.Errorf("config.proxyDHCP", "proxyDHCP needs k2's boot server: set bootAddress and tftpAddress (this host's address on the servers' network)")
		} else if h, _, err := net.SplitHostPort(cfg.TFTPAddress); err != nil || net.ParseIP(h).To4() == nil || net.ParseIP(h).IsUnspecified() {
			ds.Errorf("config.tftpAddress", "proxyDHCP gives PXE clients tftpAddress's IP as next-server: %q must be IPv4:port of this host on the servers' network, e.g. 10.0.0.1:69", cfg.TFTPAddress)
		}
		if _, _, err := net.SplitHostPort(cfg.DHCPAddress); err != nil {
			ds.Errorf("config.dhcpAddress", "dhcpAddress %q: %v; e.g. 0.0.0.0:67", cfg.DHCPAddress, err)
		}
		switch cfg.EFIBootFile {
		case "":
			cfg.EFIBootFile = "ipxe.efi"
		case "ipxe.efi", "snponly.efi":
		default:
			ds.Errorf("config.efiBootFile", "efiBootFile %q: use ipxe.efi or snponly.efi", cfg.EFIBootFile)
		}
	}
	if cfg.Image != "" {
		for _, f := range []string{cfg.kernel(), cfg.initramfs()} {
			if _, err := os.Stat(f); err != nil {
				ds.Errorf("config.image", "image: %v; build it with 'k2 os build -o %s'", err, cfg.Image)
			}
		}
	}
	if cfg.Inventory == "" {
		return cfg, ds
	}
	inv, err := LoadInventory(cfg.Inventory)
	if err != nil {
		ds.Errorf("config.inventory", "%v", err)
	}
	cfg.inv = inv
	return cfg, ds
}

// checkOS checks what booting b's OS needs from the config.
func (c *config) checkOS(b *sdk.Bootstrap) sdk.Diagnostics {
	var ds sdk.Diagnostics
	switch b.OSOf() {
	case sdk.OSTalos:
		if c.BootAddress == "" {
			ds.Errorf("config.bootAddress", "OS talos: k2 serves the Talos machine configs from its boot server; set bootAddress")
		}
		if _, err := talosconfig.ParseContractFromVersion(b.OSVersion); err != nil {
			ds.Errorf("bootstrap.osVersion", "OS talos version %q: %v; write OS talos version=v1.10.6 in the K8sfile", b.OSVersion, err)
		}
		for key, v := range map[string]string{"talosKernel": c.TalosKernel, "talosInitramfs": c.TalosInitramfs} {
			switch {
			case v == "":
				ds.Errorf("config."+key, "OS talos: set %s to Talos %s's file on this host or its URL on the site's mirror", key, b.OSVersion)
			case isURL(v):
			default:
				if _, err := os.Stat(v); err != nil {
					ds.Errorf("config."+key, "%s: %v", key, err)
				}
			}
		}
	default:
		if c.BootAddress != "" && c.Image == "" {
			ds.Errorf("config.image", "bootAddress is set but image is not: name the directory of 'k2 os build -o DIR'")
		}
	}
	return ds
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// imageManifest is the part of k2os.json ('k2 os build') k2 reads.
type imageManifest struct {
	Kernel    struct{ File string }
	Initramfs struct{ File string }
	Cmdline   string
}

func (c *config) manifest() imageManifest {
	var m imageManifest
	if b, err := os.ReadFile(filepath.Join(c.Image, "k2os.json")); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// cmdline is the image's own command line, then kernelArgs.
func (c *config) cmdline() string {
	return strings.TrimSpace(c.manifest().Cmdline + " " + *c.KernelArgs)
}

func (c *config) kernel() string {
	if f := c.manifest().Kernel.File; f != "" {
		return filepath.Join(c.Image, filepath.Base(f))
	}
	for _, n := range []string{"vmlinuz", "kernel"} {
		if p := filepath.Join(c.Image, n); fileExists(p) {
			return p
		}
	}
	return filepath.Join(c.Image, "vmlinuz")
}

func (c *config) initramfs() string {
	if f := c.manifest().Initramfs.File; f != "" {
		return filepath.Join(c.Image, filepath.Base(f))
	}
	// Without k2os.json: the names 'k2 os build' uses (zstd by default).
	for _, n := range []string{"initramfs.cpio.zst", "initramfs.cpio.gz", "initramfs.cpio", "initrd"} {
		if p := filepath.Join(c.Image, n); fileExists(p) {
			return p
		}
	}
	return filepath.Join(c.Image, "initramfs.cpio.zst")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (p *Provider) retryPolicy(cfg *config) retryPolicy {
	rp := defaultRetry
	if p.retry != nil {
		rp = *p.retry
	}
	if cfg.BMCAttempts > 0 {
		rp.Attempts = cfg.BMCAttempts
	}
	return rp
}

func (p *Provider) log() *slog.Logger {
	if p.Log != nil {
		return p.Log
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Validate checks the config, the inventory and the machines without
// touching a BMC.
func (p *Provider) Validate(_ context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, req.Bootstrap)...)
	if req.Bootstrap != nil {
		ds = append(ds, cfg.checkOS(req.Bootstrap)...)
	}
	return &sdk.ValidateResponse{Diagnostics: ds}, nil
}

func idOf(server string) string { return "metal-" + server }

func serverOf(id string) string {
	if len(id) > len("metal-") && id[:len("metal-")] == "metal-" {
		return id[len("metal-"):]
	}
	return ""
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
