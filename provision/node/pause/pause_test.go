package pause_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/ociarchive"
	"k2.dev/k2/provision/node/pause"
)

// TestExecutable runs the pause executable: it must stay alive, then exit
// 0 promptly on SIGTERM and on SIGINT.
func TestExecutable(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the pause executable is linux/amd64; this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	exe, err := pause.Executable("amd64")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "pause")
	if err := os.WriteFile(p, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sig  syscall.Signal
		pid1 bool // PID 1 of a new PID namespace, as in a pod sandbox
	}{{syscall.SIGTERM, false}, {syscall.SIGINT, false}, {syscall.SIGTERM, true}} {
		sig := c.sig
		name := sig.String()
		if c.pid1 {
			name += " as PID 1"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(p)
			if c.pid1 {
				if os.Geteuid() != 0 {
					t.Skip("a PID namespace needs root")
				}
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// A child ending must not disturb it (SIGCHLD is ignored), nor
			// a signal it does not handle with a default action of ignore.
			cmd.Process.Signal(syscall.SIGCHLD)
			cmd.Process.Signal(syscall.SIGWINCH)
			select {
			case err := <-done:
				t.Fatalf("pause exited on its own: %v", err)
			case <-time.After(300 * time.Millisecond):
			}
			start := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("pause exited with %v after %s, want status 0", err, sig)
				}
				t.Logf("exited 0 %s after %s", time.Since(start), sig)
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("pause still running 5s after %s", sig)
			}
		})
	}
}

func TestExecutableOtherArch(t *testing.T) {
	if _, err := pause.Executable("riscv64"); err == nil {
		t.Fatal("want an error for riscv64")
	}
}

// TestImage: one layer with /pause, entrypoint /pause, the same digest on
// every call, and an archive naming pause.Ref.
func TestImage(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		_, err := pause.Image()
		if err == nil {
			t.Fatal("want an error off amd64")
		}
		t.Skipf("pause image on %s: %v", runtime.GOARCH, err)
	}
	img, err := pause.Image()
	if err != nil {
		t.Fatal(err)
	}
	d1, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := pause.Executable("amd64")
	img2, err := ociarchive.BinaryImage("pause", exe, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Digest(); d2 != d1 {
		t.Errorf("digest differs between builds: %s, %s", d1, d2)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/pause" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config: entrypoint %v, platform %s/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	var archive bytes.Buffer
	if err := pause.WriteOCIArchive(&archive); err != nil {
		t.Fatal(err)
	}
	entries, err := ociarchive.List(bytes.NewReader(archive.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Ref != pause.Ref || entries[0].Digest != d1 {
		t.Errorf("archive lists %+v, want %s %s", entries, pause.Ref, d1)
	}
	size, _ := layers[0].Size()
	m, _ := img.RawManifest()
	c, _ := img.RawConfigFile()
	t.Logf("pause image %s: executable %d B, layer %d B, image %d B (manifest+config+layer), archive %d B",
		d1, len(exe), size, size+int64(len(m))+int64(len(c)), archive.Len())
}
