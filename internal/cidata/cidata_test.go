package cidata_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/internal/cidata"
)

// tool finds a program of dosfstools, mtools or util-linux, or skips.
func tool(t *testing.T, name string) string {
	t.Helper()
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if f, err := exec.LookPath(p); err == nil {
			return f
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (.ci/run installs dosfstools, mtools and util-linux)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

func write(t *testing.T, img []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cidata.img")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadByRealTools checks volumes of several sizes with tools nobody
// here wrote: fsck.vfat finds no problem, blkid sees the label, mtools
// lists the long names and reads each file back byte for byte.
func TestReadByRealTools(t *testing.T) {
	fsck, blkid, mdir, mtype := tool(t, "fsck.vfat"), tool(t, "blkid"), tool(t, "mdir"), tool(t, "mtype")
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: the largest machine config
	for _, tc := range []struct {
		name  string
		files []cidata.File
	}{
		{"empty user-data", []cidata.File{{"meta-data", []byte("instance-id: a\n")}, {"user-data", nil}}},
		{"small", []cidata.File{{"meta-data", []byte("instance-id: b\n")}, {"user-data", []byte("apiVersion: machine.k2.dev/v1\n")}}},
		{"1 MiB", []cidata.File{{"user-data", big}, {"meta-data", []byte("x")}}},
		{"cluster boundary", []cidata.File{{"user-data", bytes.Repeat([]byte{7}, 512*4)}, {"a-rather-long-file-name.yaml", []byte("y")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := cidata.Image(cidata.Label, tc.files)
			if err != nil {
				t.Fatal(err)
			}
			p := write(t, img)
			if out, err := exec.Command(fsck, "-n", p).CombinedOutput(); err != nil {
				t.Fatalf("fsck.vfat -n: %v\n%s", err, out)
			}
			out, err := exec.Command(blkid, "-o", "export", p).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "LABEL=CIDATA") || !strings.Contains(string(out), "TYPE=vfat") {
				t.Errorf("blkid: %v\n%s", err, out)
			}
			env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
			cmd := exec.Command(mdir, "-b", "-i", p, "::")
			cmd.Env = env
			out, err = cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("mdir: %v\n%s", err, out)
			}
			for _, f := range tc.files {
				if !strings.Contains(string(out), "::/"+f.Name+"\n") {
					t.Errorf("mdir -b lacks %s:\n%s", f.Name, out)
				}
				cmd := exec.Command(mtype, "-i", p, "::"+f.Name)
				cmd.Env = env
				got, err := cmd.Output()
				if err != nil {
					t.Fatalf("mtype %s: %v", f.Name, err)
				}
				if !bytes.Equal(got, f.Data) {
					t.Errorf("%s: read back %d bytes, wrote %d", f.Name, len(got), len(f.Data))
				}
			}
		})
	}
}

func TestReproducible(t *testing.T) {
	a, _ := cidata.NoCloud([]byte("x: 1\n"), "m")
	b, _ := cidata.NoCloud([]byte("x: 1\n"), "m")
	if !bytes.Equal(a, b) {
		t.Error("the same files gave different bytes")
	}
}

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		label string
		files []cidata.File
		want  string
	}{
		{"cidata!", nil, "volume label"},
		{"", nil, "volume label"},
		{"CIDATA", []cidata.File{{"a/b", nil}}, "file name"},
		{"CIDATA", []cidata.File{{"x", nil}, {"X", nil}}, "used twice"},
		{"CIDATA", []cidata.File{{"x", make([]byte, 130<<20)}}, "too large"},
	} {
		if _, err := cidata.Image(tc.label, tc.files); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Image(%q, …): %v, want %q", tc.label, err, tc.want)
		}
	}
}
