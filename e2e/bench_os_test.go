package e2e

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkOSBoot measures k2 OS in one run, under qemu TCG on this host
// (no KVM): the image's sizes (kernel; initramfs zstd-best and
// uncompressed), and for the uncompressed image the e2e test boots,
// power-on → the kernel running /init, → k2 init running, → `k2 server`
// ready (the API's /readyz, from the host), and a worker's power-on → its
// node Ready. The yardstick is Debian's own kernel and initrd booted the
// same way: its sizes, and power-on → /init and → its initramfs ready to
// mount the root (break=premount: udev has run and the drivers are
// loaded). It needs what TestOSClusterOnVMs needs but not K2_VM_E2E:
// make bench runs it. Under TCG every figure is 10–50× a KVM boot's.
//
// Targets (docs/os.md): initramfs (zstd) ≤ Talos's ~80 MB; the kernel
// reaching /init within 2× Debian's; a worker Ready within 5 min of its
// power-on under TCG on 2 cores.
func BenchmarkOSBoot(b *testing.B) {
	requireVMHost(b, b.Skipf)
	for range b.N {
		best := readOSImage(b, buildOS(b, "best"))
		c := newOSCluster(b, "none")

		// The yardstick first, alone on the host's cores.
		debKernel, debInitrd := debianKernel(b)
		deb := c.l.newVM(b, "debian", "52:54:00:78:00:20", debKernel, debInitrd,
			"console=ttyS0,115200n8 mitigations=off break=premount")
		deb.boot()
		debInit := deb.waitConsole("Run /init as init process", 5*time.Minute)
		debReady := deb.waitConsole("Spawning shell within the initramfs", 5*time.Minute)
		deb.kill()
		debSize, debRaw := fileSize(b, debInitrd), zstdSize(debInitrd)

		c.cp.boot()
		cpInit := c.cp.waitConsole("Run /init as init process", 5*time.Minute)
		cpK2 := c.cp.waitConsole("k2 init running", 5*time.Minute)
		cpReady := c.waitAPI(10 * time.Minute)
		c.worker.boot()
		c.waitNodesReady(10*time.Minute, "worker-1")
		workerReady := time.Since(c.worker.started)

		mb := func(n int64) float64 { return float64(n) / 1e6 }
		b.ReportMetric(mb(fileSize(b, filepath.Join(c.imageDir, c.image.Kernel.File))), "kernel_MB")
		b.ReportMetric(mb(best.Initramfs.Size), "initramfs_zstd_MB")
		b.ReportMetric(mb(best.Initramfs.Uncompressed), "initramfs_raw_MB")
		b.ReportMetric(cpInit.Seconds(), "init_s")
		b.ReportMetric(cpReady.Seconds(), "server_ready_s")
		b.ReportMetric(workerReady.Seconds(), "node_ready_s")
		b.ReportMetric(mb(debSize), "debian_initrd_MB")
		b.ReportMetric(debInit.Seconds(), "debian_init_s")
		b.ReportMetric(debReady.Seconds(), "debian_premount_s")
		fmt.Printf("k2 OS: kernel %.1f MB, initramfs %.1f MB zstd (best) / %.1f MB uncompressed; "+
			"under TCG, booting the uncompressed image: /init at %.1fs, k2 init running at %.1fs, k2 server ready at %.1fs after power-on; worker Ready %.1fs after its power-on\n",
			mb(fileSize(b, filepath.Join(c.imageDir, c.image.Kernel.File))), mb(best.Initramfs.Size), mb(best.Initramfs.Uncompressed),
			cpInit.Seconds(), cpK2.Seconds(), cpReady.Seconds(), workerReady.Seconds())
		fmt.Printf("Debian's initrd (yardstick): %.1f MB zstd / %.1f MB uncompressed; /init at %.1fs, ready to mount the root at %.1fs after power-on\n",
			mb(debSize), mb(debRaw), debInit.Seconds(), debReady.Seconds())
	}
}

// debianKernel is the newest /boot/vmlinuz-* and its initrd.img.
func debianKernel(t testing.TB) (kernel, initrd string) {
	t.Helper()
	ks, _ := filepath.Glob("/boot/vmlinuz-*")
	sort.Strings(ks)
	if len(ks) == 0 {
		t.Skip("no kernel in /boot")
	}
	kernel = ks[len(ks)-1]
	initrd = filepath.Join("/boot", "initrd.img-"+filepath.Base(kernel)[len("vmlinuz-"):])
	if _, err := os.Stat(initrd); err != nil {
		t.Skipf("no initrd beside %s: %v", kernel, err)
	}
	return kernel, initrd
}

func fileSize(t testing.TB, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// zstdSize is the uncompressed size of a zstd file (Debian 12's initrds
// are one zstd stream), or 0 when it is not one.
func zstdSize(p string) int64 {
	f, err := os.Open(p)
	if err != nil {
		return 0
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		return 0
	}
	defer zr.Close()
	if n, err := io.Copy(io.Discard, zr); err == nil {
		return n
	}
	return 0
}
