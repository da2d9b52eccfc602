package osimage

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// fakeKernel writes a file with a bzImage setup header naming release rel.
func fakeKernel(t *testing.T, dir, rel string) string {
	t.Helper()
	b := make([]byte, 0x4000)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x1000)
	copy(b[0x200+0x1000:], rel+" (test@k2) #1 SMP")
	p := filepath.Join(dir, "vmlinuz-"+rel)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeModules writes a module tree: files, modules.dep, .builtin, .alias.
func fakeModules(t *testing.T, dir string, deps map[string][]string, builtin []string, aliases string) string {
	t.Helper()
	var dep strings.Builder
	var mods []string
	for mod := range deps {
		mods = append(mods, mod)
	}
	slices.Sort(mods)
	for _, mod := range mods {
		ds := deps[mod]
		p := filepath.Join(dir, mod)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("module "+mod), 0o644)
		dep.WriteString(mod + ":")
		for _, d := range ds {
			dep.WriteString(" " + d)
		}
		dep.WriteString("\n")
	}
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep.String()), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(strings.Join(builtin, "\n")+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias"), []byte(aliases), 0o644)
	return dir
}

func TestResolveModules(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lib/modules/6.1.0-test")
	fakeModules(t, dir, map[string][]string{
		"kernel/fs/ext4/ext4.ko":                  {"kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko"},
		"kernel/fs/jbd2/jbd2.ko":                  nil,
		"kernel/lib/crc16.ko":                     nil,
		"kernel/net/netfilter/nf_tables.ko":       {"kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko"},
		"kernel/net/netfilter/nfnetlink.ko":       nil,
		"kernel/net/netfilter/nft_fib.ko":         {"kernel/net/netfilter/nf_tables.ko"},
		"kernel/lib/libcrc32c.ko":                 nil,
		"kernel/drivers/net/virtio_net.ko":        {"kernel/drivers/net/net_failover.ko"},
		"kernel/drivers/net/net_failover.ko":      nil,
		"kernel/drivers/net/e1000.ko":             nil,
		"kernel/drivers/unused/not-included.ko":   nil,
		"kernel/drivers/input/nls_iso8859-1.ko":   nil,
		"kernel/drivers/input/some-dashed-mod.ko": nil,
	}, []string{"kernel/drivers/virtio/virtio_pci.ko"}, "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\nalias virtio:d00000001v* virtio_net\nalias pci:v00008086d0000100E* e1000\nalias pci:x not_included\n")
	set, err := resolveModules(dir, "6.1.0-test", []string{"ext4", "some_dashed_mod"}, []string{"virtio_pci", "virtio_net"}, []string{"kernel/net/netfilter"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"kernel/drivers/input/some-dashed-mod.ko",
		"kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko",
		"kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko",
		"kernel/lib/libcrc32c.ko", // a dependency of a directory's module
		"kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nfnetlink.ko", "kernel/net/netfilter/nft_fib.ko",
	}
	if d := cmp.Diff(want, set.files); d != "" {
		t.Errorf("files (-want +got):\n%s", d)
	}
	// Loaded at boot: the list, minus hardware drivers (coldplugged) and
	// built-ins.
	if d := cmp.Diff([]string{"ext4", "some_dashed_mod"}, set.boot); d != "" {
		t.Errorf("boot list (-want +got):\n%s", d)
	}
	dep, _ := set.depFile()
	if strings.Contains(string(dep), "e1000") || !strings.Contains(string(dep), "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	alias, _ := set.aliasFile()
	if string(alias) != "alias virtio:d00000001v* virtio_net\n" {
		t.Errorf("modules.alias: %q", alias)
	}
	_, err = resolveModules(dir, "6.1.0-test", []string{"ext4", "zfs"}, []string{"nvme"}, nil)
	if err == nil || !strings.Contains(err.Error(), "zfs, nvme") || !strings.Contains(err.Error(), "6.1.0-test") {
		t.Errorf("missing modules: %v", err)
	}
}

func TestKernelRelease(t *testing.T) {
	k := fakeKernel(t, t.TempDir(), "6.1.0-57-amd64")
	if rel, err := KernelRelease(k); err != nil || rel != "6.1.0-57-amd64" {
		t.Errorf("KernelRelease = %q, %v", rel, err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(bad, make([]byte, 4096), 0o644)
	if _, err := KernelRelease(bad); err == nil || !strings.Contains(err.Error(), "not a Linux bzImage") {
		t.Errorf("not a kernel: %v", err)
	}
	if ks, _ := filepath.Glob("/boot/vmlinuz-*"); len(ks) > 0 {
		rel, err := KernelRelease(ks[0])
		if err != nil || !strings.HasPrefix(filepath.Base(ks[0]), "vmlinuz-"+rel) {
			t.Errorf("Debian's kernel %s: %q %v", ks[0], rel, err)
		}
	}
	if got := versionLess("/boot/vmlinuz-6.1.0-9-amd64", "/boot/vmlinuz-6.1.0-57-amd64"); !got {
		t.Error("6.1.0-9 sorts after 6.1.0-57")
	}
}

// smallOptions builds an image of small stand-ins: /bin/true (dynamic, so
// its libraries come along) for every program, a fake kernel and modules.
func smallOptions(t *testing.T, out string) Options {
	t.Helper()
	tr, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1)")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		bb = tr
	}
	in := t.TempDir()
	cni := filepath.Join(in, "cni")
	os.MkdirAll(cni, 0o755)
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		os.Symlink(tr, filepath.Join(cni, p))
	}
	mods := filepath.Join(in, "lib/modules/6.1.0-test")
	deps := map[string][]string{}
	for _, m := range append(append([]string{}, BootModules...), HardwareModules...) {
		deps["kernel/"+m+".ko"] = nil
	}
	fakeModules(t, mods, deps, nil, "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n")
	return Options{OutDir: out, Kernel: fakeKernel(t, in, "6.1.0-test"), Modules: mods, K2: tr, Shim: tr,
		Runc: tr, CNIDir: cni, Iptables: tr, Mkfs: tr, Busybox: bb, Level: LevelFast}
}

// TestBuildReproducible builds the same inputs twice: the same bytes.
func TestBuildReproducible(t *testing.T) {
	ctx := context.Background()
	a, b := t.TempDir(), t.TempDir()
	ma, err := Build(ctx, smallOptions(t, a))
	if err != nil {
		t.Fatal(err)
	}
	// The same inputs in other temporary directories.
	mb, err := Build(ctx, smallOptions(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if ma.Initramfs.SHA256 != mb.Initramfs.SHA256 || ma.Kernel.SHA256 != mb.Kernel.SHA256 {
		t.Errorf("two builds differ: %s vs %s", ma.Initramfs.SHA256, mb.Initramfs.SHA256)
	}
	for _, f := range []string{InitramfsFile, KernelFile} {
		x, _ := os.ReadFile(filepath.Join(a, f))
		y, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two builds", f)
		}
	}
}

// TestBuildRawReproducible builds the bootable disk twice from the same
// inputs: the same bytes, a valid MBR whose one partition is the ESP.
// It needs Debian's GRUB images (.ci/run installs them).
func TestBuildRawReproducible(t *testing.T) {
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("grub-mkimage missing (.ci/run installs grub-common grub-pc-bin grub-efi-amd64-bin)")
		}
		t.Skip("grub-mkimage not installed")
	}
	ctx := context.Background()
	var disks [][]byte
	for range 2 {
		o := smallOptions(t, t.TempDir())
		o.Format = FormatRaw
		m, err := Build(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if m.Disk == nil || m.Disk.File != DiskFile {
			t.Fatalf("manifest disk: %+v", m.Disk)
		}
		b, err := os.ReadFile(filepath.Join(o.OutDir, DiskFile))
		if err != nil {
			t.Fatal(err)
		}
		disks = append(disks, b)
	}
	if !bytes.Equal(disks[0], disks[1]) {
		t.Fatal("two raw disks from the same inputs differ")
	}
	mbr := disks[0][:512]
	if mbr[510] != 0x55 || mbr[511] != 0xAA || mbr[446] != 0x80 || mbr[446+4] != 0xEF {
		t.Errorf("MBR: signature %x %x, partition 1 status %#x type %#x; want 55 aa, 0x80, 0xef", mbr[510], mbr[511], mbr[446], mbr[450])
	}
	if start := binary.LittleEndian.Uint32(mbr[446+8:]); start != espStartLBA {
		t.Errorf("the ESP starts at LBA %d, want %d", start, espStartLBA)
	}
}

// TestInitramfsContents unpacks an image and checks what k2 OS needs.
func TestInitramfsContents(t *testing.T) {
	out := t.TempDir()
	o := smallOptions(t, out)
	// The host's iptables when there is one: its extensions come along.
	xt, _ := exec.LookPath("xtables-nft-multi")
	if xt != "" {
		o.Iptables = xt
	}
	m, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(out, InitramfsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(raw)) != m.Initramfs.Uncompressed {
		t.Errorf("unpacked %d bytes, manifest says %d", len(raw), m.Initramfs.Uncompressed)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]cpio.Record{}
	for _, r := range recs {
		if r.MTime != 0 || r.UID != 0 || r.GID != 0 {
			t.Errorf("%s: mtime %d uid %d gid %d, want 0", r.Name, r.MTime, r.UID, r.GID)
		}
		got[r.Name] = r
	}
	content := func(name string) string {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			return ""
		}
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		return string(b)
	}
	if content("init") != "/usr/bin/k2" || content("sbin/modprobe") != "/usr/bin/busybox" {
		t.Error("/init must link to k2 and /sbin/modprobe to busybox")
	}
	if content("bin/mount") != "/usr/bin/busybox" || content("bin/umount") != "/usr/bin/busybox" {
		t.Error("the kubelet's mount(8) and umount(8) must be there (busybox)")
	}
	if c := got["dev/console"]; c.Mode&cpio.S_IFMT != cpio.S_IFCHR || c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("/dev/console: %+v", c.Info)
	}
	for _, p := range []string{"usr/bin/k2", "usr/bin/containerd-shim-runc-v2", "usr/sbin/runc", "usr/sbin/xtables-nft-multi", "usr/sbin/mke2fs",
		"usr/lib/cni/bridge", "usr/lib/cni/portmap", "etc/os-release", "lib/modules/6.1.0-test/kernel/ext4.ko", "lib/modules/6.1.0-test/kernel/virtio_pci.ko"} {
		if _, ok := got[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	if l := content("usr/sbin/iptables-restore"); l != "xtables-nft-multi" {
		t.Errorf("iptables-restore -> %q", l)
	}
	// The matches and targets kube-proxy's rules load (-m conntrack,
	// -j MASQUERADE, -m statistic…), where the host's iptables finds them.
	if exts, _ := xtablesExtensions(xt); xt != "" && len(exts) > 0 {
		dir := strings.TrimPrefix(filepath.Dir(exts[0]), "/")
		for _, x := range []string{"libxt_conntrack.so", "libxt_comment.so", "libxt_MASQUERADE.so", "libxt_statistic.so", "libxt_mark.so", "libxt_addrtype.so"} {
			if _, ok := got[dir+"/"+x]; !ok {
				t.Errorf("iptables extension %s/%s missing", dir, x)
			}
		}
		for n := range got {
			if strings.Contains(n, "/xtables/libebt_") || strings.Contains(n, "/xtables/libarpt_") {
				t.Errorf("%s: ebtables/arptables extensions are not needed", n)
			}
		}
	}
	// The shared libraries of the programs, found by ldd: libc at least.
	libc := false
	for n := range got {
		if strings.Contains(n, "libc.so") {
			libc = true
		}
	}
	if !libc {
		t.Error("no libc: the programs' shared libraries are missing")
	}
	if d := cmp.Diff(strings.Join(m.Modules, "\n")+"\n", content("etc/k2/modules")); d != "" {
		t.Errorf("etc/k2/modules (-want +got):\n%s", d)
	}
	if strings.Contains(content("etc/k2/modules"), "virtio_pci") {
		t.Error("hardware drivers are coldplugged, not in the boot list")
	}
	if content("lib/modules/6.1.0-test/modules.alias") != "alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n" {
		t.Error("modules.alias not carried")
	}
}
