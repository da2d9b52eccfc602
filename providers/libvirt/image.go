package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/digitalocean/go-libvirt"

	"k2.dev/k2/providers/sdk"
)

// imageManifest is the part of k2os.json (written by `k2 os build` beside
// the kernel and the initramfs; see docs/os.md) that the provider reads.
const imageManifest = "k2os.json"

type manifestFile struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type manifest struct {
	Arch      string       `json:"arch"`
	K2Version string       `json:"k2Version"`
	Cmdline   string       `json:"cmdline"`
	Kernel    manifestFile `json:"kernel"`
	Initramfs manifestFile `json:"initramfs"`
}

// bootImage is a k2 OS image to boot: its kernel and initramfs, the
// kernel command line it wants, and where to read them.
type bootImage struct {
	Ref       string // the config's image, for people
	Arch      string // GOARCH spelling
	Cmdline   string
	Kernel    imageFile
	Initramfs imageFile
}

// imageFile is one file of an image.
type imageFile struct {
	Role   string // "vmlinuz" or "initramfs": part of the volume name
	Size   int64
	SHA256 string // hex
	open   func(ctx context.Context) (io.ReadCloser, error)
}

// volume is the name of the shared volume holding the file: its digest
// names it, so every machine booting the same bytes shares one upload.
func (f imageFile) volume() string {
	return "k2os-" + f.Role + "-" + f.SHA256[:16]
}

// openImage reads the image's manifest (not the files: they are streamed
// when uploaded).
func openImage(ctx context.Context, cfg *config) (*bootImage, error) {
	if cfg.imageIsDir {
		return openImageDir(cfg.imageResolved)
	}
	return openImageOCI(ctx, cfg.imageResolved)
}

func openImageDir(dir string) (*bootImage, error) {
	b, err := os.ReadFile(filepath.Join(dir, imageManifest))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return nil, userErrorf("config.image", "the k2 OS image directory %s does not exist: build one with 'k2 os build -o %s' or set image to another directory or an OCI reference", dir, dir)
		}
		return nil, userErrorf("config.image", "%s has no %s: it is not a k2 OS image; build one with 'k2 os build -o %s'", dir, imageManifest, dir)
	}
	if err != nil {
		return nil, userErrorf("config.image", "reading the k2 OS image: %v", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, userErrorf("config.image", "%s: %v", filepath.Join(dir, imageManifest), err)
	}
	img := &bootImage{Ref: dir, Arch: m.Arch, Cmdline: m.Cmdline}
	for _, f := range []struct {
		dst  *imageFile
		src  manifestFile
		role string
	}{{&img.Kernel, m.Kernel, "vmlinuz"}, {&img.Initramfs, m.Initramfs, "initramfs"}} {
		if f.src.File == "" || len(f.src.SHA256) != 64 || strings.ContainsAny(f.src.File, "/\\") {
			return nil, userErrorf("config.image", "%s: the %s entry needs a file name and a sha256; rebuild the image with 'k2 os build'", filepath.Join(dir, imageManifest), f.role)
		}
		p := filepath.Join(dir, f.src.File)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, userErrorf("config.image", "the image's %s: %v", f.role, err)
		}
		if fi.Size() != f.src.Size {
			return nil, userErrorf("config.image", "%s is %d bytes, %s says %d: the image changed after it was built; rebuild it", p, fi.Size(), imageManifest, f.src.Size)
		}
		*f.dst = imageFile{Role: f.role, Size: f.src.Size, SHA256: f.src.SHA256,
			open: func(context.Context) (io.ReadCloser, error) { return os.Open(p) }}
	}
	return img, nil
}

// check reports what makes the image unbootable by these machines.
func (img *bootImage) check(ms []sdk.MachineRequest) sdk.Diagnostics {
	var ds sdk.Diagnostics
	for i, m := range ms {
		arch := m.Arch
		if arch == "" {
			arch = "amd64"
		}
		if img.Arch != "" && img.Arch != arch {
			ds.Errorf(fmt.Sprintf("machines[%d].arch", i), "the k2 OS image %s is for %s, the machine %s", img.Ref, img.Arch, arch)
		}
	}
	return ds
}

// uploads serialises uploads of one volume within this process.
var uploads sync.Map // volume name → *sync.Mutex

// ensureImageFile makes sure the pool holds f's bytes in its volume: a
// volume whose size is the file's is whole (an upload starts at an empty
// volume that grows as it is written; one cut short is smaller and is
// written again from the start). It returns the volume's path.
func (c *conn) ensureImageFile(ctx context.Context, p *pool, f imageFile, report func(string, ...any)) (string, error) {
	name := f.volume()
	mu, _ := uploads.LoadOrStore(name, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	vol, err := c.l.StorageVolLookupByName(p.ref, name)
	switch {
	case isCode(err, libvirt.ErrNoStorageVol):
		if vol, err = c.createVolume(p, name, 0); err != nil {
			return "", c.wrap(ctx, err)
		}
	case err != nil:
		return "", c.wrap(ctx, err)
	default:
		_, capacity, _, err := c.l.StorageVolGetInfo(vol)
		if err != nil {
			return "", c.wrap(ctx, err)
		}
		if int64(capacity) == f.Size {
			return p.path(name), nil
		}
		if int64(capacity) > f.Size { // not ours as it should be: start again
			if err := c.l.StorageVolDelete(vol, 0); err != nil && !isCode(err, libvirt.ErrNoStorageVol) {
				return "", c.wrap(ctx, err)
			}
			if vol, err = c.createVolume(p, name, 0); err != nil {
				return "", c.wrap(ctx, err)
			}
		}
	}
	if c.fake() {
		report("image %s: %s (the test driver keeps no data)", f.Role, mb(f.Size))
		return p.path(name), nil
	}
	r, err := f.open(ctx)
	if err != nil {
		return "", fmt.Errorf("opening the image's %s: %w", f.Role, err)
	}
	defer r.Close()
	report("uploading image %s: %s to %s", f.Role, mb(f.Size), name)
	pr := &progressReader{r: io.LimitReader(r, f.Size), h: sha256.New(), total: f.Size, report: func(done int64) {
		report("uploading image %s: %s of %s", f.Role, mb(done), mb(f.Size))
	}}
	if err := c.l.StorageVolUpload(vol, pr, 0, uint64(f.Size), 0); err != nil {
		return "", c.wrap(ctx, fmt.Errorf("uploading the image's %s to volume %s: %w", f.Role, name, err))
	}
	if got := hex.EncodeToString(pr.h.Sum(nil)); pr.n != f.Size || got != f.SHA256 {
		c.l.StorageVolDelete(vol, 0)
		return "", fmt.Errorf("the image's %s is not what its manifest says (%d bytes, sha256 %s; want %d bytes, %s): rebuild or pull it again", f.Role, pr.n, got, f.Size, f.SHA256)
	}
	return p.path(name), nil
}

// progressReader hashes what it reads and reports every 10 %.
type progressReader struct {
	r      io.Reader
	h      hash.Hash
	n      int64
	total  int64
	next   int64
	report func(done int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.h.Write(b[:n])
	p.n += int64(n)
	if p.total > 0 && p.n >= p.next && p.n < p.total {
		if p.next > 0 {
			p.report(p.n)
		}
		p.next = p.n + p.total/10
	}
	return n, err
}

func mb(n int64) string {
	switch {
	case n >= 10<<20:
		return fmt.Sprintf("%d MB", n/1e6)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	default:
		return fmt.Sprintf("%d KB", (n+999)/1000)
	}
}
