package osinit

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// onRootfs reports whether / is the kernel's initial rootfs (the unpacked
// initramfs), which pivot_root — and so runc — cannot leave.
// switchedEnv carries how long the move took to the re-executed init.
const switchedEnv = "K2_INIT_MOVED"

func onRootfs() bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[4] != "/" {
			continue
		}
		if i := slices.Index(fields, "-"); i >= 0 && i+1 < len(fields) {
			return fields[i+1] == "rootfs"
		}
	}
	return false
}

// switchRoot makes the root a mount runc can pivot_root away from: it
// bind-mounts the rootfs onto dir, moves that mount over / and chroots
// into it — the bind mount has a parent, which pivot_root requires —
// then runs /init again. Nothing is copied. It returns only on failure.
func switchRoot(dir string) error {
	start := time.Now()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/", dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mounting / on %s: %w", dir, err)
	}
	unix.Unmount("/proc", unix.MNT_DETACH)
	if err := os.Chdir(dir); err != nil {
		return err
	}
	if err := unix.Mount(dir, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", dir, err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	os.Setenv(switchedEnv, time.Since(start).Round(time.Millisecond).String())
	return unix.Exec("/init", []string{"/init"}, os.Environ())
}

// pivotRootWorks checks, in a throw-away mount namespace on a thread of its
// own, that pivot_root works here (what runc does for every container).
func pivotRootWorks() error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		d := "/run/k2-pivot-check"
		os.MkdirAll(d, 0o700)
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, ""); err != nil {
			errc <- err
			return
		}
		os.Mkdir(d+"/old", 0o700)
		errc <- unix.PivotRoot(d, d+"/old")
	}()
	return <-errc
}
