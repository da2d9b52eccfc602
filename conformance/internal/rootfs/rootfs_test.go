package rootfs

import (
	"archive/tar"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func entries(t *testing.T, f *FS) map[string]string {
	t.Helper()
	l, err := f.Layer()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Describe(l)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLayer: parents are made, modes and links kept, and the same file
// system always gives the same digest.
func TestLayer(t *testing.T) {
	build := func() *FS {
		f := New()
		f.File("/etc/passwd", []byte("root:x:0:0\n"), 0o644)
		f.Dir("/tmp", 0o1777)
		f.Symlink("/bin/sh", "/bin/busybox")
		f.File("/usr/local/bin/nnp", []byte("x"), 0o755)
		f.Mode("/usr/local/bin/nnp", 0o4755)
		return f
	}
	got := entries(t, build())
	want := map[string]string{
		"bin/":              "5 -rwxr-xr-x",
		"bin/sh":            "2 -rwxrwxrwx -> /bin/busybox",
		"etc/":              "5 -rwxr-xr-x",
		"etc/passwd":        "0 -rw-r--r-- root:x:0:0\n",
		"tmp/":              "5 -rwxrwxrwx",
		"usr/":              "5 -rwxr-xr-x",
		"usr/local/":        "5 -rwxr-xr-x",
		"usr/local/bin/":    "5 -rwxr-xr-x",
		"usr/local/bin/nnp": "0 -rwxr-xr-x x",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("layer (-want +got):\n%s", d)
	}
	l1, _ := build().Layer()
	l2, _ := build().Layer()
	d1, _ := l1.Digest()
	d2, _ := l2.Digest()
	if d1 != d2 {
		t.Errorf("digests differ: %s %s", d1, d2)
	}
	// The set-user-ID and sticky bits survive in the tar header.
	rc, _ := l1.Uncompressed()
	defer rc.Close()
	tr := tar.NewReader(rc)
	for h, err := tr.Next(); err == nil; h, err = tr.Next() {
		if h.Name == "usr/local/bin/nnp" && h.Mode != 0o4755 || h.Name == "tmp/" && h.Mode != 0o1777 {
			t.Errorf("%s mode %o", h.Name, h.Mode)
		}
	}
}

// TestExecutable copies a dynamic Debian executable with the libraries ldd
// names, the loader among them, and a static one alone.
func TestExecutable(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("no ldd")
	}
	f := New()
	if err := f.Executable("/bin/ls", "/bin/ls"); err != nil {
		t.Fatal(err)
	}
	var libc, loader bool
	for p := range f.entries {
		libc = libc || strings.HasSuffix(p, "/libc.so.6")
		loader = loader || strings.Contains(p, "ld-linux")
	}
	if !libc || !loader || !f.Has("/bin/ls") {
		t.Errorf("entries %v: want ls, libc and the loader", f.entries)
	}
	static := t.TempDir() + "/static"
	cmd := exec.Command("go", "build", "-o", static, "./testdata/static")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	libs, err := Libraries(static)
	if err != nil || len(libs) != 0 {
		t.Errorf("Libraries(static) = %v, %v", libs, err)
	}
}
