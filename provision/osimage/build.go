// Package osimage builds the k2 OS boot image (`k2 os build`): a Linux
// kernel and an initramfs whose /init is the k2 binary, with the modules,
// programs and libraries a k2 node needs, and optionally a bootable raw
// disk holding both. The same inputs give the same bytes. docs/os.md
// documents the image; push.go moves it through OCI registries.
package osimage

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/u-root/u-root/pkg/ldd"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/iocount"
)

// File names in an image directory (and titles of its OCI layers).
const (
	KernelFile    = "vmlinuz"
	InitramfsFile = "initramfs.cpio.zst"
	// InitramfsPlainFile is the initramfs of LevelNone.
	InitramfsPlainFile = "initramfs.cpio"
	DiskFile           = "disk.raw"
	ManifestFile       = "k2os.json"
)

// Formats.
const (
	FormatInitramfs = "initramfs" // vmlinuz + initramfs: direct kernel boot, network boot
	FormatRaw       = "raw"       // also disk.raw: a bootable disk (cloud image, AMI, dd to a disk)
)

// Compression levels.
const (
	LevelBest = "best" // smallest (zstd's best in Go; ~70 s for the whole image on 2 cores)
	LevelFast = "fast" // ~10 % larger, ten times faster to build
	LevelNone = "none" // not compressed: 4× larger, boots fastest under emulation (tests)
)

// DefaultCmdline is the kernel command line k2 OS wants: messages on the
// serial console (the last console= is where k2 init writes), a reboot
// 10 s after a panic.
const DefaultCmdline = "console=tty0 console=ttyS0,115200n8 panic=10"

// Paths inside the image.
const (
	imageK2         = "usr/bin/k2"
	imageModuleList = "etc/k2/modules"
	cniDirInImage   = "usr/lib/cni"
)

// Options configure Build. Zero values pick the build host's files.
type Options struct {
	// OutDir receives the image files.
	OutDir string
	// Format is FormatInitramfs (default) or FormatRaw.
	Format string
	// Arch is the image's architecture in GOARCH spelling; default the
	// build host's. Every input must be of that architecture.
	Arch string
	// Kernel is the vmlinuz to use; default the newest /boot/vmlinuz-*.
	Kernel string
	// Modules is the kernel's module tree; default /lib/modules/<version
	// read from the kernel>.
	Modules string
	// K2 is the k2 binary to put in the image; default this executable.
	K2 string
	// Shim is containerd-shim-runc-v2; default beside K2, else on PATH.
	Shim string
	// Runc, CNIDir, Iptables, Mkfs, Busybox default to the host's.
	Runc, CNIDir, Iptables, Mkfs, Busybox string
	// Level is LevelBest (default) or LevelFast.
	Level string
	// Cmdline is recorded in the manifest (and the raw disk's boot
	// entries); default DefaultCmdline.
	Cmdline string
	Logger  *slog.Logger
}

// Manifest is k2os.json, the image's description for providers.
type Manifest struct {
	// Version of this manifest's shape.
	Version   int        `json:"version"`
	Arch      string     `json:"arch"`
	K2Version string     `json:"k2Version"`
	Kernel    FileInfo   `json:"kernel"`
	Initramfs FileInfo   `json:"initramfs"`
	Disk      *FileInfo  `json:"disk,omitempty"`
	Cmdline   string     `json:"cmdline"`
	KernelRel string     `json:"kernelRelease"`
	Modules   []string   `json:"modules"` // loaded at boot
	Contents  []Contents `json:"contents"`
}

// FileInfo describes one file of the image.
type FileInfo struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Uncompressed is the initramfs's size once unpacked.
	Uncompressed int64  `json:"uncompressed,omitempty"`
	Compression  string `json:"compression,omitempty"`
}

// Contents is a program in the initramfs and where it came from.
type Contents struct {
	Path   string `json:"path"`
	Source string `json:"source"`
	Size   int64  `json:"size"`
}

// Build writes the image into o.OutDir and returns its manifest.
func Build(ctx context.Context, o Options) (*Manifest, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	log := o.Logger
	kver, err := KernelRelease(o.Kernel)
	if err != nil {
		return nil, err
	}
	if o.Modules == "" {
		o.Modules = filepath.Join("/lib/modules", kver)
	}
	mods, err := resolveModules(o.Modules, kver, BootModules, HardwareModules, ModuleDirs)
	if err != nil {
		return nil, err
	}
	log.Info("kernel", "file", o.Kernel, "release", kver, "modules", len(mods.files), "loaded at boot", len(mods.boot))
	tree, contents, err := o.tree(mods)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	m := &Manifest{Version: 1, Arch: o.Arch, K2Version: k2Version(o.K2), Cmdline: o.Cmdline, KernelRel: kver, Modules: mods.boot, Contents: contents}
	if m.Kernel, err = copyFile(o.Kernel, filepath.Join(o.OutDir, KernelFile)); err != nil {
		return nil, err
	}
	log.Info("writing the initramfs", "files", len(tree.entries), "level", o.Level)
	initrd, stale := InitramfsFile, InitramfsPlainFile
	if o.Level == LevelNone {
		initrd, stale = stale, initrd
	}
	os.Remove(filepath.Join(o.OutDir, stale))
	if m.Initramfs, err = tree.write(ctx, filepath.Join(o.OutDir, initrd), o.Level); err != nil {
		return nil, err
	}
	if o.Format == FormatRaw {
		d, err := writeDisk(filepath.Join(o.OutDir, DiskFile), o.Kernel, filepath.Join(o.OutDir, initrd), o.Cmdline)
		if err != nil {
			return nil, fmt.Errorf("writing the raw disk: %w", err)
		}
		m.Disk = &d
	} else {
		os.Remove(filepath.Join(o.OutDir, DiskFile))
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := atomicfile.Write(filepath.Join(o.OutDir, ManifestFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

func (o *Options) defaults() error {
	if o.OutDir == "" {
		return errors.New("an output directory is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch o.Format {
	case "":
		o.Format = FormatInitramfs
	case FormatInitramfs, FormatRaw:
	default:
		return fmt.Errorf("format %q: want %s or %s", o.Format, FormatInitramfs, FormatRaw)
	}
	switch o.Level {
	case "":
		o.Level = LevelBest
	case LevelBest, LevelFast, LevelNone:
	default:
		return fmt.Errorf("compression level %q: want %s, %s or %s", o.Level, LevelBest, LevelFast, LevelNone)
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Arch != runtime.GOARCH && (o.Kernel == "" || o.K2 == "") {
		return fmt.Errorf("an %s image from this %s host needs --kernel, --modules, --k2 and every program of that architecture", o.Arch, runtime.GOARCH)
	}
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.Kernel == "" {
		k, err := newestKernel("/boot")
		if err != nil {
			return err
		}
		o.Kernel = k
	}
	if o.K2 == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		o.K2 = self
	}
	if o.Shim == "" {
		o.Shim = filepath.Join(filepath.Dir(o.K2), "containerd-shim-runc-v2")
		if _, err := os.Stat(o.Shim); err != nil {
			p, err := exec.LookPath("containerd-shim-runc-v2")
			if err != nil {
				return fmt.Errorf("containerd-shim-runc-v2 is neither beside %s nor on PATH: 'make build' writes it to bin/, or give --shim", o.K2)
			}
			o.Shim = p
		}
	}
	look := func(p *string, names []string, hint string) error {
		if *p != "" {
			return nil
		}
		for _, n := range names {
			if f, err := exec.LookPath(n); err == nil {
				*p = f
				return nil
			}
			if _, err := os.Stat(n); err == nil {
				*p = n
				return nil
			}
		}
		return fmt.Errorf("%s not found: %s", names[0], hint)
	}
	if err := look(&o.Runc, []string{"runc", "/usr/sbin/runc"}, "apt-get install runc"); err != nil {
		return err
	}
	if err := look(&o.Iptables, []string{"xtables-nft-multi", "/usr/sbin/xtables-nft-multi"}, "apt-get install iptables"); err != nil {
		return err
	}
	if err := look(&o.Mkfs, []string{"mke2fs", "/usr/sbin/mke2fs", "/sbin/mke2fs"}, "apt-get install e2fsprogs"); err != nil {
		return err
	}
	if err := look(&o.Busybox, []string{"/bin/busybox", "busybox"}, "apt-get install busybox-static"); err != nil {
		return err
	}
	if o.CNIDir == "" {
		for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
			if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
				o.CNIDir = d
				break
			}
		}
		if o.CNIDir == "" {
			return errors.New("no CNI plugins in /usr/lib/cni or /opt/cni/bin: apt-get install containernetworking-plugins, or give --cni-dir")
		}
	}
	return nil
}

// newestKernel is the /boot/vmlinuz-* with the highest version.
func newestKernel(dir string) (string, error) {
	ks, _ := filepath.Glob(filepath.Join(dir, "vmlinuz-*"))
	if len(ks) == 0 {
		return "", fmt.Errorf("no kernel in %s: apt-get install linux-image-amd64, or give --kernel", dir)
	}
	sort.Slice(ks, func(i, j int) bool { return versionLess(ks[i], ks[j]) })
	return ks[len(ks)-1], nil
}

// versionLess compares dotted versions numerically where they are numbers.
func versionLess(a, b string) bool {
	fa, fb := strings.FieldsFunc(a, isSep), strings.FieldsFunc(b, isSep)
	for i := 0; i < len(fa) && i < len(fb); i++ {
		var na, nb int
		_, ea := fmt.Sscan(fa[i], &na)
		_, eb := fmt.Sscan(fb[i], &nb)
		if ea == nil && eb == nil && na != nb {
			return na < nb
		}
		if fa[i] != fb[i] {
			return fa[i] < fb[i]
		}
	}
	return len(fa) < len(fb)
}

func isSep(r rune) bool { return r == '.' || r == '-' || r == '_' }

// KernelRelease reads the release string from a bzImage's setup header
// (what uname -r prints once it runs).
func KernelRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("%s is not a Linux bzImage kernel", path)
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, off)
	rel, _, _ := strings.Cut(string(buf[:n]), " ")
	if rel == "" {
		return "", fmt.Errorf("%s: no kernel version in its header", path)
	}
	return rel, nil
}

// k2Version asks the k2 binary for its version (best effort).
func k2Version(k2 string) string {
	out, err := exec.Command(k2, "version", "-o", "json").Output()
	if err != nil {
		return ""
	}
	var v struct{ Version string }
	json.Unmarshal(out, &v)
	return v.Version
}

func copyFile(src, dst string) (FileInfo, error) {
	in, err := os.Open(src)
	if err != nil {
		return FileInfo{}, err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{File: filepath.Base(dst), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, os.Rename(tmp, dst)
}

// entry is one file of the initramfs.
type entry struct {
	path   string // inside the image, no leading /
	mode   uint64 // cpio mode (type and permissions)
	src    string // host file for regular files
	data   []byte // contents for generated files
	target string // symlink target
	rdev   [2]uint64
}

type tree struct{ entries map[string]*entry }

func (t *tree) dir(p string) {
	for p != "." && p != "/" && p != "" {
		if _, ok := t.entries[p]; !ok {
			t.entries[p] = &entry{path: p, mode: cpio.S_IFDIR | 0o755}
		}
		p = filepath.Dir(p)
	}
}

func (t *tree) file(p, src string, perm uint64) {
	t.dir(filepath.Dir(p))
	t.entries[p] = &entry{path: p, mode: cpio.S_IFREG | perm, src: src}
}

func (t *tree) data(p string, b []byte, perm uint64) {
	t.dir(filepath.Dir(p))
	t.entries[p] = &entry{path: p, mode: cpio.S_IFREG | perm, data: b}
}

func (t *tree) link(p, target string) {
	t.dir(filepath.Dir(p))
	t.entries[p] = &entry{path: p, mode: cpio.S_IFLNK | 0o777, target: target}
}

// hostFile adds a host path as it is: a symlink stays a symlink (its
// target is added too), a file keeps its permissions.
func (t *tree) hostFile(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	rel := strings.TrimPrefix(filepath.Clean(p), "/")
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		t.link(rel, target)
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		return t.hostFile(target)
	}
	t.file(rel, p, uint64(fi.Mode().Perm()))
	return nil
}

// xtablesExtensions lists the IPv4/IPv6 iptables extensions (libxt_*,
// libipt_*, libip6t_*) of the iptables binary given: in the xtables
// directory beside the libxtables it links, the path iptables was built to
// load them from. None found is not an error (a static iptables); an
// unreadable directory is.
func xtablesExtensions(iptables string) ([]string, error) {
	libs, err := ldd.FList(iptables)
	if err != nil {
		return nil, fmt.Errorf("finding iptables' libraries: %w", err)
	}
	for _, l := range libs {
		if !strings.HasPrefix(filepath.Base(l), "libxtables.so") {
			continue
		}
		real, err := filepath.EvalSymlinks(l)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(filepath.Dir(real), "xtables")
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("iptables' extensions: %w", err)
		}
		var out []string
		for _, e := range ents {
			n := e.Name()
			if strings.HasSuffix(n, ".so") && (strings.HasPrefix(n, "libxt_") || strings.HasPrefix(n, "libipt_") || strings.HasPrefix(n, "libip6t_")) {
				out = append(out, filepath.Join(dir, n))
			}
		}
		return out, nil
	}
	return nil, nil
}

// tree assembles the initramfs's files.
func (o *Options) tree(mods *moduleSet) (*tree, []Contents, error) {
	t := &tree{entries: map[string]*entry{}}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "var/lib/k2", "var/log", "etc/k2", "root", "mnt", "usr/bin", "usr/sbin", "sbin", "bin"} {
		t.dir(d)
	}
	t.entries["tmp"].mode = cpio.S_IFDIR | 0o1777
	t.entries["root"].mode = cpio.S_IFDIR | 0o700
	// The kernel opens /dev/console for init before anything is mounted.
	t.entries["dev/console"] = &entry{path: "dev/console", mode: cpio.S_IFCHR | 0o600, rdev: [2]uint64{5, 1}}
	progs := []struct{ path, src string }{
		{imageK2, o.K2},
		{"usr/bin/containerd-shim-runc-v2", o.Shim},
		{"usr/sbin/runc", o.Runc},
		{"usr/sbin/xtables-nft-multi", o.Iptables},
		{"usr/sbin/mke2fs", o.Mkfs},
		{"usr/bin/busybox", o.Busybox},
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		progs = append(progs, struct{ path, src string }{cniDirInImage + "/" + p, filepath.Join(o.CNIDir, p)})
	}
	var contents []Contents
	var dynamic []string
	for _, p := range progs {
		src, err := filepath.EvalSymlinks(p.src)
		if err != nil {
			return nil, nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, nil, err
		}
		t.file(p.path, src, 0o755)
		contents = append(contents, Contents{Path: "/" + p.path, Source: src, Size: fi.Size()})
		dynamic = append(dynamic, src)
	}
	// iptables' matches and targets (-m conntrack, -m comment, -j
	// MASQUERADE… in kube-proxy's and the CNI plugins' rules) are plugins
	// it loads at run time from the xtables directory beside libxtables:
	// no ldd finds them. Where they are on the build host, they are in the
	// image.
	exts, err := xtablesExtensions(o.Iptables)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range exts {
		if err := t.hostFile(e); err != nil {
			return nil, nil, err
		}
	}
	// Shared libraries (and the dynamic loader) of every program and
	// plugin, with u-root's ldd, which asks each program's own loader.
	libs, err := ldd.FList(append(dynamic, exts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("finding shared libraries: %w", err)
	}
	sort.Strings(libs)
	for _, l := range libs {
		if err := t.hostFile(l); err != nil {
			return nil, nil, err
		}
	}
	t.link("init", "/"+imageK2)
	t.link("sbin/modprobe", "/usr/bin/busybox") // the kernel's module requests
	t.link("bin/sh", "/usr/bin/busybox")        // a shell on the console, for rescue
	// The kubelet mounts pods' tmpfs, projected and bind volumes with
	// mount(8) and unmounts them with umount(8).
	t.link("bin/mount", "/usr/bin/busybox")
	t.link("bin/umount", "/usr/bin/busybox")
	t.link("usr/sbin/mkfs.ext4", "mke2fs")
	for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		t.link("usr/sbin/"+n, "xtables-nft-multi")
	}
	if _, err := os.Stat("/etc/mke2fs.conf"); err == nil {
		t.file("etc/mke2fs.conf", "/etc/mke2fs.conf", 0o644)
	}
	if _, err := os.Stat("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		t.file("etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt", 0o644)
	}
	t.data("etc/os-release", []byte("NAME=\"k2 OS\"\nID=k2os\nPRETTY_NAME=\"k2 OS\"\nHOME_URL=\"https://k2.dev\"\n"), 0o644)
	t.data("etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"), 0o644)
	t.data("etc/group", []byte("root:x:0:\nnogroup:x:65534:\n"), 0o644)
	t.data("etc/nsswitch.conf", []byte("hosts: files dns\n"), 0o644)
	t.data("etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644)
	t.data(imageModuleList, []byte(strings.Join(mods.boot, "\n")+"\n"), 0o644)
	mdir := "lib/modules/" + mods.version
	for _, f := range mods.files {
		t.file(mdir+"/"+f, filepath.Join(mods.dir, f), 0o644)
	}
	dep, err := mods.depFile()
	if err != nil {
		return nil, nil, err
	}
	t.data(mdir+"/modules.dep", dep, 0o644)
	alias, err := mods.aliasFile()
	if err != nil {
		return nil, nil, err
	}
	t.data(mdir+"/modules.alias", alias, 0o644)
	for _, f := range []string{"modules.builtin", "modules.order"} {
		if _, err := os.Stat(filepath.Join(mods.dir, f)); err == nil {
			t.file(mdir+"/"+f, filepath.Join(mods.dir, f), 0o644)
		}
	}
	return t, contents, nil
}

// write writes the tree as a newc cpio archive, zstd-compressed, in path
// order with fixed inode numbers, owners and times: the same files give
// the same bytes.
func (t *tree) write(ctx context.Context, dst, level string) (FileInfo, error) {
	paths := make([]string, 0, len(t.entries))
	for p := range t.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	tmp := dst + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	h := sha256.New()
	out := &iocount.Writer{W: io.MultiWriter(f, h)}
	var zw io.WriteCloser = nopCloser{out}
	compression := ""
	if level != LevelNone {
		zl := zstd.SpeedBestCompression
		if level == LevelFast {
			zl = zstd.SpeedBetterCompression
		}
		if zw, err = zstd.NewWriter(out, zstd.WithEncoderLevel(zl), zstd.WithEncoderCRC(true)); err != nil {
			return FileInfo{}, err
		}
		compression = "zstd"
	}
	raw := &iocount.Writer{W: zw}
	rw := cpio.Newc.Writer(raw)
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return FileInfo{}, err
		}
		e := t.entries[p]
		info := cpio.Info{Ino: uint64(i + 1), Mode: e.mode, NLink: 1, Name: p, Rmajor: e.rdev[0], Rminor: e.rdev[1]}
		var rec cpio.Record
		switch {
		case e.mode&cpio.S_IFMT == cpio.S_IFLNK:
			rec = cpio.StaticRecord([]byte(e.target), info)
		case e.data != nil:
			rec = cpio.StaticRecord(e.data, info)
		case e.src != "":
			sf, err := os.Open(e.src)
			if err != nil {
				return FileInfo{}, err
			}
			st, err := sf.Stat()
			if err != nil {
				sf.Close()
				return FileInfo{}, err
			}
			info.FileSize = uint64(st.Size())
			rec = cpio.Record{ReaderAt: sf, Info: info}
			err = rw.WriteRecord(rec)
			sf.Close()
			if err != nil {
				return FileInfo{}, fmt.Errorf("adding %s: %w", e.src, err)
			}
			continue
		default:
			rec = cpio.Record{Info: info}
			if e.mode&cpio.S_IFMT == cpio.S_IFDIR {
				rec.NLink = 2
			}
		}
		if err := rw.WriteRecord(rec); err != nil {
			return FileInfo{}, fmt.Errorf("adding %s: %w", p, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return FileInfo{}, err
	}
	if err := zw.Close(); err != nil {
		return FileInfo{}, err
	}
	if err := f.Close(); err != nil {
		return FileInfo{}, err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return FileInfo{}, err
	}
	return FileInfo{File: filepath.Base(dst), Size: out.N, SHA256: hex.EncodeToString(h.Sum(nil)), Uncompressed: raw.N, Compression: compression}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
