// Package rootfs assembles container root file systems from files on this
// machine — Debian executables with the shared libraries ldd names, static
// Go programs, busybox applets — and turns them into one reproducible image
// layer.
package rootfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// FS is a root file system being assembled. Paths are absolute ("/bin/sh");
// parent directories are made as needed (0755, root). The zero value is not
// usable; call New.
type FS struct {
	entries map[string]*entry
}

type entry struct {
	typ      byte // tar.TypeReg, TypeDir, TypeSymlink
	mode     int64
	data     []byte
	src      string // host file whose content data is, read at Layer time
	link     string
	uid, gid int
}

// New returns an empty file system.
func New() *FS { return &FS{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// Dir makes a directory with mode (e.g. 01777 for /tmp).
func (f *FS) Dir(p string, mode int64) {
	f.entries[clean(p)] = &entry{typ: tar.TypeDir, mode: mode}
}

// File writes data to p with mode.
func (f *FS) File(p string, data []byte, mode int64) {
	f.entries[clean(p)] = &entry{typ: tar.TypeReg, mode: mode, data: data}
}

// Owned sets the owner of an entry already added.
func (f *FS) Owned(p string, uid, gid int) {
	if e := f.entries[clean(p)]; e != nil {
		e.uid, e.gid = uid, gid
	}
}

// Symlink makes p a symbolic link to target, replacing what was there.
func (f *FS) Symlink(p, target string) {
	f.entries[clean(p)] = &entry{typ: tar.TypeSymlink, mode: 0o777, link: target}
}

// Has reports whether p was added.
func (f *FS) Has(p string) bool { _, ok := f.entries[clean(p)]; return ok }

// HostFile copies the host file src (symlinks followed) to p, keeping its
// permission bits.
func (f *FS) HostFile(p, src string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	f.entries[clean(p)] = &entry{typ: tar.TypeReg, mode: int64(st.Mode().Perm()), src: src}
	return nil
}

// HostTree copies the host directory src (regular files and symlinks, as
// they are) to p.
func (f *FS) HostTree(p, src string) error {
	return filepath.Walk(src, func(fp string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, fp)
		dst := path.Join(p, filepath.ToSlash(rel))
		switch {
		case info.IsDir():
			f.Dir(dst, int64(info.Mode().Perm()))
		case info.Mode()&os.ModeSymlink != 0:
			t, err := os.Readlink(fp)
			if err != nil {
				return err
			}
			f.Symlink(dst, t)
		case info.Mode().IsRegular():
			f.entries[clean(dst)] = &entry{typ: tar.TypeReg, mode: int64(info.Mode().Perm()), src: fp}
		}
		return nil
	})
}

// Executable copies the host executable src to p together with every
// shared library ldd names for it (at the path ldd prints, which is where
// the dynamic loader looks), the loader itself included. A static
// executable is copied alone.
func (f *FS) Executable(p, src string) error {
	if err := f.HostFile(p, src); err != nil {
		return err
	}
	libs, err := Libraries(src)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if !f.Has(l) {
			if err := f.HostFile(l, l); err != nil {
				return fmt.Errorf("library %s of %s: %w", l, src, err)
			}
		}
	}
	return nil
}

// Libraries returns the absolute paths of the shared libraries exe loads,
// as ldd resolves them on this machine; none for a static executable.
func Libraries(exe string) ([]string, error) {
	out, err := exec.Command("ldd", exe).CombinedOutput()
	s := string(out)
	if strings.Contains(s, "not a dynamic executable") || strings.Contains(s, "statically linked") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w: %s", exe, err, strings.TrimSpace(s))
	}
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: %s (install the Debian package that provides it)", exe, line)
		}
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or
		// "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no file.
		if _, after, ok := strings.Cut(line, "=> "); ok {
			line = after
		}
		if p, _, _ := strings.Cut(line, " "); strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, nil
}

// Layer writes the file system as one uncompressed tar (sorted, fixed
// times, parents first) and returns it as an image layer.
func (f *FS) Layer() (v1.Layer, error) {
	all := map[string]*entry{}
	for p, e := range f.entries {
		all[p] = e
		for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
			if _, ok := f.entries[d]; !ok {
				all[d] = &entry{typ: tar.TypeDir, mode: 0o755}
			}
		}
	}
	names := make([]string, 0, len(all))
	for p := range all {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, p := range names {
		e := all[p]
		hdr := &tar.Header{Name: p, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: epoch, Format: tar.FormatPAX}
		data := e.data
		switch e.typ {
		case tar.TypeDir:
			hdr.Name += "/"
		case tar.TypeSymlink:
			hdr.Linkname = e.link
		case tar.TypeReg:
			if e.src != "" {
				b, err := os.ReadFile(e.src)
				if err != nil {
					return nil, err
				}
				data = b
			}
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// Mode changes the permission bits of an entry already added (e.g. 04755
// for a set-user-ID program).
func (f *FS) Mode(p string, mode int64) {
	if e := f.entries[clean(p)]; e != nil {
		e.mode = mode
	}
}

// Describe reads a layer back, for checks: path → its tar type flag and
// "-> target" for a link, or the content of a regular file under 4 KiB.
func Describe(l v1.Layer) (map[string]string, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		v := string(rune(h.Typeflag)) + " " + os.FileMode(h.Mode).String()
		switch h.Typeflag {
		case tar.TypeSymlink:
			v += " -> " + h.Linkname
		case tar.TypeReg:
			if h.Size < 4096 {
				b, err := io.ReadAll(tr)
				if err != nil {
					return nil, err
				}
				v += " " + string(b)
			}
		}
		out[h.Name] = v
	}
}
