// Package memtrim hands back the memory a long-running k2 process needed only
// to start.
//
// One binary holds every part of k2 (client, control plane, kubelet,
// containerd, providers), and starting any of it runs the package
// initialisers of all of it: a server has ~140 MB of the executable's code
// and read-only data resident by the time it is ready, most of it touched
// once, the rest mapped because the kernel maps and reads ahead the pages
// around each fault. Idle, it uses ~40 MB of them. Those pages are clean
// copies of the file, so giving them back is safe: the mappings are advised
// MADV_RANDOM (fault in only the page used, no read-around), MADV_PAGEOUT
// (reclaim the pages only this process maps) and MADV_DONTNEED (unmap the
// rest; the ones still needed come back from the file on their next use),
// then the file's cached pages that no process maps any more are dropped
// (POSIX_FADV_DONTNEED), or the kernel would map them back around every
// fault. The cost: the next k2 command started on the host reads its pages
// from disk again.
package memtrim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Release returns freed heap to the OS and gives back the executable's
// read-only pages (see UnmapExecutable). It returns how many bytes of
// mappings it advised.
func Release() (int64, error) {
	debug.FreeOSMemory()
	return UnmapExecutable()
}

// ReleaseAfter calls Release after each delay (counted from the call, one
// after another) until ctx ends; a process that keeps starting things for a
// while (the controller-manager after the apiserver, pods after the kubelet)
// wants more than one. It blocks until the last delay or until ctx ends:
// run it as a component (internal/component).
func ReleaseAfter(ctx context.Context, log *slog.Logger, delays ...time.Duration) {
	for _, d := range delays {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		if _, err := Release(); err != nil && log != nil {
			log.Debug("releasing start-up memory", "err", err)
		}
	}
}

// UnmapExecutable gives back this process's resident pages of its
// executable's code and read-only data (see the package comment); the ones
// it uses fault back in. Writable segments, and read-only ones written
// before (RELRO), are left alone.
func UnmapExecutable() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	ranges, err := readOnlyMappings("/proc/self/smaps", exe)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, r := range ranges {
		if err := madvise(r, unix.MADV_RANDOM); err != nil {
			return total, err
		}
		// Reclaim the pages only this process maps (Linux 5.4+), then unmap
		// the ones others map too.
		if err := madvise(r, unix.MADV_PAGEOUT); err != nil && !errors.Is(err, unix.EINVAL) {
			return total, err
		}
		if err := madvise(r, unix.MADV_DONTNEED); err != nil {
			return total, err
		}
		total += int64(r.end - r.start)
	}
	// Drop the file's cached pages no process maps: the kernel maps cached
	// neighbours of every faulting page too (fault-around), which would
	// bring most of them back into this process. Pages mapped anywhere stay.
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return total, err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return total, fmt.Errorf("fadvise %s: %w", exe, err)
	}
	return total, nil
}

func madvise(r addrRange, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, uintptr(advice)); errno != 0 {
		return fmt.Errorf("madvise(%#x-%#x, %d): %w", r.start, r.end, advice, errno)
	}
	return nil
}

type addrRange struct{ start, end uintptr }

// readOnlyMappings lists the private, non-writable mappings of path in a
// /proc/<pid>/smaps file that hold no anonymous pages. A read-only mapping
// with anonymous pages was written before it was made read-only — the
// relocated GOT and .data.rel.ro of a dynamically linked binary (RELRO):
// MADV_DONTNEED would bring back the file's unrelocated bytes, and the next
// call through them jumps to address 0. Static k2 has no such mapping; test
// binaries linked against libc (cgo) do.
func readOnlyMappings(smaps, path string) ([]addrRange, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []addrRange
	var cur *addrRange // the current mapping, if it is a candidate
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 0 {
			continue
		}
		if strings.HasSuffix(fs[0], ":") {
			// A detail line of the mapping above: "Anonymous: 8 kB".
			if cur != nil && fs[0] == "Anonymous:" && (len(fs) < 2 || fs[1] != "0") {
				cur = nil
			}
			continue
		}
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
		// address perms offset dev inode pathname
		if len(fs) < 6 || strings.Join(fs[5:], " ") != path {
			continue
		}
		perms := fs[1]
		if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			return nil, fmt.Errorf("%s: bad line %q", smaps, sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("%s: bad line %q", smaps, sc.Text())
		}
		cur = &addrRange{uintptr(start), uintptr(end)}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out, sc.Err()
}
