package images

import (
	"testing"

	"k2.dev/k2/conformance/internal/rootfs"
)

// entries reads fs's layer back (rootfs.Describe).
func entries(t *testing.T, fs *rootfs.FS) map[string]string {
	t.Helper()
	l, err := fs.Layer()
	if err != nil {
		t.Fatal(err)
	}
	got, err := rootfs.Describe(l)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
