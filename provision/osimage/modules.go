package osimage

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/u-root/u-root/pkg/kmodule"
)

// BootModules are the kernel modules k2 OS loads at every boot, by name,
// in order; their dependencies come along. A name the kernel has built in
// is fine; a name it has neither built in nor as a module fails the build,
// so the list stays honest.
var BootModules = []string{
	// crc32c first: ext4, jbd2 and nf_tables' libcrc32c ask the crypto API
	// for it (a soft dependency modules.dep does not list).
	"crc32c_generic", "crc32c_intel",
	// File systems: the data disk, cidata (FAT or ISO 9660), overlay for
	// containerd's snapshots.
	"ext4", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "isofs", "overlay",
	// Pod networking: the CNI bridge and veths, bridged traffic seen by
	// iptables.
	"bridge", "br_netfilter", "veth",
	// Netfilter for kube-proxy and the kubelet (iptables-nft): the tables,
	// NAT, conntrack and the xtables matches and targets their rules use.
	"nf_tables", "nft_compat", "nft_chain_nat", "nft_ct",
	"nf_conntrack", "nf_nat", "xt_conntrack", "xt_comment", "xt_mark", "xt_MASQUERADE",
	"xt_addrtype", "xt_multiport", "xt_statistic", "xt_nat", "xt_tcpudp",
	"ipt_REJECT", "ip6t_REJECT",
	// Input events: how the ACPI power button reaches k2 init.
	"evdev",
}

// HardwareModules are drivers the image carries and k2 init loads only for
// devices the machine has (matching their modalias, as udev's coldplug
// does): buses, disks and NICs of qemu/KVM and libvirt (virtio, IDE/SATA),
// clouds (NVMe, ENA) and servers (Intel NICs, AHCI, NVMe), and the ACPI
// power button.
var HardwareModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console", "virtio_rng",
	"nvme", "ahci", "ata_piix", "sd_mod", "sr_mod",
	"e1000", "e1000e", "igb", "ixgbe", "ena",
	"button",
}

// ModuleDirs are included whole, beyond BootModules and their
// dependencies, for what the kernel asks modprobe for later (an iptables
// match kube-proxy starts to use): the netfilter and bridge modules.
var ModuleDirs = []string{"kernel/net/netfilter", "kernel/net/ipv4/netfilter", "kernel/net/ipv6/netfilter", "kernel/net/bridge"}

// moduleSet is the resolved set of module files.
type moduleSet struct {
	dir     string   // /lib/modules/<version> on the build host
	version string   // the kernel's release
	files   []string // paths relative to dir, sorted
	boot    []string // names to load at boot (built-in ones dropped)
}

// resolveModules finds the files for names and ModuleDirs in dir (the
// kernel's /lib/modules/<version>) with their dependencies, using the
// kernel's modules.dep through u-root's module prober.
func resolveModules(dir, version string, names, hardware, dirs []string) (*moduleSet, error) {
	builtin, err := readBuiltin(dir)
	if err != nil {
		return nil, err
	}
	var (
		mu     sync.Mutex
		loaded []string
	)
	root, rel := splitModulesDir(dir, version)
	p, err := kmodule.NewProber(kmodule.ProbeOpts{RootDir: root, KVer: rel, IgnoreProcMods: true,
		DryRunCB: func(path string) { mu.Lock(); loaded = append(loaded, path); mu.Unlock() }})
	if err != nil {
		return nil, fmt.Errorf("reading %s/modules.dep: %w", dir, err)
	}
	set := &moduleSet{dir: dir, version: version}
	var missing []string
	for i, n := range append(slices.Clone(names), hardware...) {
		if builtin[normalizeModName(n)] {
			continue
		}
		if err := p.Probe(n, ""); err != nil {
			missing = append(missing, n)
			continue
		}
		if i < len(names) {
			set.boot = append(set.boot, n)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("kernel %s has neither built in nor as a module: %s; give a kernel that has them (--kernel, --modules)", version, strings.Join(missing, ", "))
	}
	files := map[string]bool{}
	for _, l := range loaded {
		rel, err := filepath.Rel(dir, l)
		if err != nil {
			return nil, err
		}
		files[rel] = true
	}
	for _, d := range dirs {
		filepath.WalkDir(filepath.Join(dir, d), func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() && isModuleFile(p) {
				rel, _ := filepath.Rel(dir, p)
				files[rel] = true
			}
			return nil
		})
	}
	// The directories' modules bring their own dependencies.
	deps, err := readDeps(dir)
	if err != nil {
		return nil, err
	}
	for changed := true; changed; {
		changed = false
		for f := range files {
			for _, d := range deps[f] {
				if !files[d] {
					files[d], changed = true, true
				}
			}
		}
	}
	for f := range files {
		set.files = append(set.files, f)
	}
	sort.Strings(set.files)
	return set, nil
}

// splitModulesDir turns /x/lib/modules/<ver> into root /x and release
// <ver>, the form u-root's prober takes.
func splitModulesDir(dir, version string) (root, rel string) {
	clean := filepath.Clean(dir)
	for _, base := range []string{"/lib/modules/", "/usr/lib/modules/"} {
		if i := strings.LastIndex(clean, base); i >= 0 {
			return clean[:i], clean[i+len(base):]
		}
	}
	return clean, version
}

func isModuleFile(p string) bool {
	for _, s := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, s) {
			return true
		}
	}
	return false
}

// normalizeModName is the module name of a file or name: base name without
// the .ko suffixes, - as _.
func normalizeModName(s string) string {
	s = path.Base(s)
	for _, suf := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, suf)
	}
	return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_")
}

func readBuiltin(dir string) (map[string]bool, error) {
	out := map[string]bool{}
	f, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if os.IsNotExist(err) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out[normalizeModName(l)] = true
		}
	}
	return out, sc.Err()
}

// readDeps reads modules.dep: module file → its dependencies' files.
func readDeps(dir string) (map[string][]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		out[strings.TrimSpace(mod)] = strings.Fields(deps)
	}
	return out, sc.Err()
}

// depFile is modules.dep restricted to the included modules (in the
// kernel's order), so modprobe and k2 init see exactly what is there.
func (s *moduleSet) depFile() ([]byte, error) {
	return filterLines(filepath.Join(s.dir, "modules.dep"), func(l string) bool {
		mod, _, _ := strings.Cut(l, ":")
		_, ok := slices.BinarySearch(s.files, strings.TrimSpace(mod))
		return ok
	})
}

// aliasFile is modules.alias restricted to the included modules, for the
// kernel's requests by alias (nft-expr-counter, net-pf-16…).
func (s *moduleSet) aliasFile() ([]byte, error) {
	names := map[string]bool{}
	for _, f := range s.files {
		names[normalizeModName(f)] = true
	}
	return filterLines(filepath.Join(s.dir, "modules.alias"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) == 3 && f[0] == "alias" && names[normalizeModName(f[2])]
	})
}

func filterLines(path string, keep func(string) bool) ([]byte, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && keep(l) {
			out.WriteString(l)
			out.WriteByte('\n')
		}
	}
	return []byte(out.String()), nil
}
