package fatfs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/internal/fatfs"
)

// tool returns the path of a dosfstools/mtools program, skipping the test
// when it is missing (outside CI; .ci/run installs them).
func tool(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if f, err := exec.LookPath(p); err == nil {
			return f
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not installed (.ci/run installs dosfstools and mtools)", name)
	}
	t.Skipf("%s not installed (apt-get install dosfstools mtools)", name)
	return ""
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// TestWriteReadByOtherTools writes an image and reads it back with tools
// nobody here wrote: dosfstools' fsck.fat finds no problem, mtools lists
// and reads every file, long names included.
func TestWriteReadByOtherTools(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	bigData := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB, many clusters
	os.WriteFile(big, bigData, 0o644)
	files := []fatfs.File{
		{Name: "user-data", Data: []byte("apiVersion: machine.k2.dev/v1\n")},
		{Name: "meta-data", Data: []byte("instance-id: i-1\n")},
		{Name: "EFI/BOOT/BOOTX64.EFI", Data: []byte("efi")},
		{Name: "loader/entries/k2-os.conf", Data: []byte("title k2 OS\n")},
		{Name: "k2/initramfs.cpio.zst", Source: big},
		{Name: "A Long File Name With Spaces.txt", Data: []byte("long")},
		{Name: "empty", Data: []byte{}},
	}
	img := filepath.Join(dir, "img")
	f, _ := os.Create(img)
	size, err := fatfs.Write(f, files, fatfs.Options{Label: "cidata", VolumeID: 0x1234abcd})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != size {
		t.Errorf("image is %d bytes, Write says %d", fi.Size(), size)
	}
	run(t, "fsck.fat", "-n", "-V", img)
	for _, fl := range files {
		want := fl.Data
		if fl.Source != "" {
			want = bigData
		}
		got := run(t, "mtype", "-i", img, "::/"+fl.Name)
		if got != string(want) {
			t.Errorf("mtype %s: %d bytes, want %d", fl.Name, len(got), len(want))
		}
	}
	if l := run(t, "mlabel", "-i", img, "-s", "::"); !strings.Contains(l, "CIDATA") {
		t.Errorf("mlabel: %q", l)
	}
	if ls := run(t, "mdir", "-i", img, "-b", "::/EFI/BOOT"); !strings.Contains(ls, "BOOTX64.EFI") {
		t.Errorf("mdir ::/EFI/BOOT: %q", ls)
	}
}

func TestReproducible(t *testing.T) {
	a, err := fatfs.Cidata([]byte("doc"), "i-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := fatfs.Cidata([]byte("doc"), "i-1")
	if !bytes.Equal(a, b) {
		t.Error("the same inputs gave different images")
	}
	if len(a) != fatfs.CidataSize {
		t.Errorf("cidata image is %d bytes", len(a))
	}
	c, _ := fatfs.Cidata([]byte("other"), "i-1")
	if bytes.Equal(a, c) {
		t.Error("different user-data, same image")
	}
	img := filepath.Join(t.TempDir(), "cidata")
	os.WriteFile(img, a, 0o644)
	run(t, "fsck.fat", "-n", img)
	if got := run(t, "mtype", "-i", img, "::/user-data"); got != "doc" {
		t.Errorf("user-data: %q", got)
	}
}

func TestErrors(t *testing.T) {
	var w discard
	if _, err := fatfs.Write(&w, []fatfs.File{{Name: "a", Data: []byte("x")}, {Name: "A", Data: []byte("y")}}, fatfs.Options{}); err == nil {
		t.Error("a name given twice (FAT ignores case) was accepted")
	}
	if _, err := fatfs.Write(&w, []fatfs.File{{Name: "a", Data: make([]byte, 5<<20)}}, fatfs.Options{Size: 4 << 20}); err == nil || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("files larger than the image: %v", err)
	}
	if _, err := fatfs.Write(&w, nil, fatfs.Options{Size: 1 << 20}); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("a 1 MiB FAT16: %v", err)
	}
}

type discard struct{}

func (discard) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
