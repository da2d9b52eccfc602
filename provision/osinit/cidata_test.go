package osinit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestProbeLabel checks the label probe against file systems made by the
// real tools (dosfstools, e2fsprogs).
func TestProbeLabel(t *testing.T) {
	for _, tc := range []struct {
		tool      string
		args      []string
		size      int64
		fs, label string
	}{
		{"mkfs.vfat", []string{"-n", "CIDATA"}, 4 << 20, "vfat", "CIDATA"},
		{"mkfs.vfat", []string{"-F", "32", "-n", "cidata"}, 40 << 20, "vfat", "cidata"},
		{"mkfs.vfat", nil, 4 << 20, "vfat", ""},
		{"mkfs.ext4", []string{"-q", "-F", "-L", "k2-data"}, 8 << 20, "ext4", "k2-data"},
	} {
		tool, err := exec.LookPath(tc.tool)
		if err != nil {
			tool = filepath.Join("/usr/sbin", tc.tool)
			if _, err := os.Stat(tool); err != nil {
				t.Logf("%s not installed; skipping that case", tc.tool)
				continue
			}
		}
		img := filepath.Join(t.TempDir(), "img")
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		os.Truncate(img, tc.size)
		if out, err := exec.Command(tool, append(tc.args, img)...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", tc.tool, err, out)
		}
		f, _ := os.Open(img)
		fs, label := ProbeLabel(f)
		f.Close()
		if fs != tc.fs || label != tc.label {
			t.Errorf("%s %v: got %q %q, want %q %q", tc.tool, tc.args, fs, label, tc.fs, tc.label)
		}
	}
	zero := filepath.Join(t.TempDir(), "zero")
	os.WriteFile(zero, make([]byte, 1<<16), 0o644)
	f, _ := os.Open(zero)
	defer f.Close()
	if fs, _ := ProbeLabel(f); fs != "" {
		t.Errorf("an empty disk probed as %q", fs)
	}
}

func TestCIDataFind(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.vfat")
	if err != nil {
		t.Skip("mkfs.vfat not installed (dosfstools)")
	}
	sys, dev := t.TempDir(), t.TempDir()
	for _, d := range []struct{ name, label string }{{"vda", ""}, {"vdb", "CIDATA"}, {"vdc", "CIDATA"}} {
		os.Mkdir(filepath.Join(sys, d.name), 0o755)
		img := filepath.Join(dev, d.name)
		os.WriteFile(img, nil, 0o644)
		os.Truncate(img, 4<<20)
		if d.label != "" {
			if out, err := exec.Command(mkfs, "-n", d.label, img).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
	}
	s := &CIDataSource{SysBlock: sys, DevDir: dev}
	p, fs, err := s.find()
	if err != nil || p != filepath.Join(dev, "vdb") || fs != "vfat" {
		t.Errorf("find = %q %q %v; want the first labelled volume, vdb", p, fs, err)
	}
	os.Remove(filepath.Join(sys, "vdb"))
	os.Remove(filepath.Join(sys, "vdc"))
	if _, _, err := s.find(); !errors.Is(err, ErrNoConfig) {
		t.Errorf("without a cidata volume: %v", err)
	}
}
