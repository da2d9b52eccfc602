package libvirttest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Markers the stand-in OS prints on its serial console.
const (
	MarkCIDataBegin = "k2test: cidata user-data begin"
	MarkCIDataEnd   = "k2test: cidata user-data end"
	MarkAddress     = "k2test: address "
	MarkAlive       = "k2test: alive"
)

// BusyboxImage writes a stand-in for a k2 OS image into a new directory
// and returns it: the build host's kernel, and an initramfs of Debian's
// busybox-static and the virtio, vfat and power-button modules whose init
// prints the cidata volume's user-data between MarkCIDataBegin and
// MarkCIDataEnd, takes a DHCP lease on eth0 (printing MarkAddress), then
// prints MarkAlive every second. A directory of the shape `k2 os build`
// writes (k2os.json, vmlinuz, initramfs.cpio), booting in seconds under
// emulation: for tests of what a provider does with VMs, not of k2 OS.
// It skips t where the host lacks a kernel, its modules or busybox.
func BusyboxImage(t testing.TB) string {
	t.Helper()
	busybox := "/bin/busybox"
	if _, err := os.Stat(busybox); err != nil {
		t.Skip("busybox-static is not installed")
	}
	kernels, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(kernels)
	if len(kernels) == 0 {
		t.Skip("no kernel in /boot (linux-image-amd64)")
	}
	kernel := kernels[len(kernels)-1]
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	modDir := filepath.Join("/lib/modules", release)
	deps, err := moduleDeps(modDir)
	if err != nil {
		t.Skipf("modules of kernel %s: %v", release, err)
	}
	var order []string
	seen := map[string]bool{}
	var add func(string)
	add = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			add(d)
		}
		order = append(order, m)
	}
	for _, name := range []string{"virtio_pci", "virtio_net", "virtio_blk", "vfat", "nls_cp437", "nls_ascii", "button"} {
		path := ""
		for p := range deps {
			if strings.TrimSuffix(filepath.Base(p), ".ko") == name {
				path = p
			}
		}
		if path == "" {
			continue // built in
		}
		add(path)
	}
	w := &cpioWriter{}
	for _, d := range []string{"bin", "dev", "proc", "sys", "mnt", "lib", "lib/modules"} {
		w.dir(d)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	w.file("bin/busybox", bb, 0o755)
	var insmods []string
	for _, m := range order {
		if !strings.HasSuffix(m, ".ko") {
			t.Skipf("module %s is compressed; the stand-in OS needs plain .ko files", m)
		}
		b, err := os.ReadFile(filepath.Join(modDir, m))
		if err != nil {
			t.Fatal(err)
		}
		w.file("lib/modules/"+filepath.Base(m), b, 0o644)
		insmods = append(insmods, filepath.Base(m))
	}
	w.file("init", []byte(fmt.Sprintf(initScript, strings.Join(insmods, " "), MarkCIDataBegin, MarkCIDataEnd, MarkAddress, MarkAlive)), 0o755)
	w.file("bin/dhcp-event", []byte(dhcpScript), 0o755)
	initramfs := w.close()

	dir := t.TempDir()
	kb, err := os.ReadFile(kernel)
	if err != nil {
		t.Skipf("reading the kernel: %v", err)
	}
	entry := func(name string, b []byte) map[string]any {
		h := sha256.Sum256(b)
		return map[string]any{"file": name, "size": len(b), "sha256": hex.EncodeToString(h[:])}
	}
	os.WriteFile(filepath.Join(dir, "vmlinuz"), kb, 0o644)
	os.WriteFile(filepath.Join(dir, "initramfs.cpio"), initramfs, 0o644)
	m, _ := json.MarshalIndent(map[string]any{"version": 1, "arch": "amd64", "k2Version": "busybox-stand-in",
		"cmdline": "console=ttyS0,115200n8 panic=10 quiet", "kernelRelease": release,
		"kernel": entry("vmlinuz", kb), "initramfs": entry("initramfs.cpio", initramfs)}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "k2os.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in %s; do insmod /lib/modules/$m; done
sleep 1
dev=$(findfs LABEL=CIDATA)
mount -t vfat -o ro "$dev" /mnt && {
	echo "%s"
	cat /mnt/user-data
	echo
	echo "%s"
	umount /mnt
}
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 20 -s /bin/dhcp-event
echo "%s$(ip -4 -o addr show eth0 | awk '{print $4}')"
i=0
while true; do i=$((i+1)); echo "%s $i"; sleep 1; done
`

const dhcpScript = `#!/bin/sh
[ "$1" = bound ] && ip addr add "$ip/${mask:-24}" dev "$interface"
exit 0
`

// moduleDeps reads modules.dep: module path → its dependencies.
func moduleDeps(dir string) (map[string][]string, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		mod, deps, ok := strings.Cut(s.Text(), ":")
		if ok {
			out[mod] = strings.Fields(deps)
		}
	}
	return out, s.Err()
}

// cpioWriter writes a newc cpio archive (what the kernel unpacks as an
// initramfs).
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) entry(name string, mode int, data []byte) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.buf.WriteString(name + "\x00")
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string)                      { w.entry(name, 0o040755, nil) }
func (w *cpioWriter) file(name string, b []byte, perm int) { w.entry(name, 0o100000|perm, b) }

func (w *cpioWriter) close() []byte {
	w.entry("TRAILER!!!", 0, nil)
	return w.buf.Bytes()
}
