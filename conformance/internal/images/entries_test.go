package images

import (
	"archive/tar"
	"io"
	"testing"

	"k2.dev/k2/conformance/internal/rootfs"
)

// entries reads fs's layer back: path → "type mode [-> link | content]"
// (content for small files and text).
func entries(t *testing.T, fs *rootfs.FS) map[string]string {
	t.Helper()
	l, err := fs.Layer()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		v := string(rune(h.Typeflag)) + " "
		switch h.Typeflag {
		case tar.TypeSymlink:
			v += "-> " + h.Linkname
		case tar.TypeReg:
			if h.Size < 4096 {
				b, _ := io.ReadAll(tr)
				v += string(b)
			}
		}
		out[h.Name] = v
	}
}
