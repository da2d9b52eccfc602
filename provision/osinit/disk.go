package osinit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"k2.dev/k2/provision/machineconfig"
)

// blockDisk is a whole disk as the data-disk choice sees it.
type blockDisk struct {
	name, dev     string
	fstype, label string
	partitioned   bool // has partitions or a partition table
	readOnly      bool
	size          int64 // bytes
}

// listDisks lists whole disks (not partitions, loop, ram or CD devices).
func listDisks(sysBlock, devDir string) []blockDisk {
	entries, _ := os.ReadDir(sysBlock)
	var out []blockDisk
	for _, e := range entries {
		n := e.Name()
		base := filepath.Join(sysBlock, n)
		if _, err := os.Stat(filepath.Join(base, "partition")); err == nil {
			continue
		}
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "sr") || strings.HasPrefix(n, "dm-") {
			continue
		}
		d := blockDisk{name: n, dev: filepath.Join(devDir, n)}
		if b, err := os.ReadFile(filepath.Join(base, "ro")); err == nil && strings.TrimSpace(string(b)) == "1" {
			d.readOnly = true
		}
		if b, err := os.ReadFile(filepath.Join(base, "size")); err == nil {
			fmt.Sscan(string(b), &d.size)
			d.size *= 512
		}
		subs, _ := os.ReadDir(base)
		for _, s := range subs {
			if strings.HasPrefix(s.Name(), n) {
				d.partitioned = true
			}
		}
		d.fstype, d.label = probeDevice(d.dev)
		if !d.partitioned && d.fstype == "" {
			d.partitioned = hasPartitionTable(d.dev)
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// hasPartitionTable reports an MBR or GPT signature.
func hasPartitionTable(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 1024)
	if n, _ := f.ReadAt(b, 0); n < 1024 {
		return false
	}
	return (b[510] == 0x55 && b[511] == 0xAA) || bytes.Equal(b[512:520], []byte("EFI PART"))
}

// chooseDataDisk picks the disk for /var/lib/k2 among disks: the one k2
// formatted before (ext4 labelled k2-data), else the first empty one
// (no file system, no partitions, writable, at least 1 GiB). It never
// picks a disk with anything on it.
func chooseDataDisk(disks []blockDisk) (blockDisk, bool) {
	for _, d := range disks {
		if d.fstype == "ext4" && d.label == machineconfig.DataLabel && !d.readOnly {
			return d, true
		}
	}
	for _, d := range disks {
		if d.fstype == "" && !d.partitioned && !d.readOnly && d.size >= 1<<30 {
			return d, true
		}
	}
	return blockDisk{}, false
}

// mountDataDisk formats the data disk if it is empty and mounts it on dir.
func (m *machine) mountDataDisk(ctx context.Context, dd *machineconfig.DataDisk, dir string) error {
	log := m.r.log
	var d blockDisk
	if dd.Device == machineconfig.DataDiskAuto {
		var ok bool
		// Disks may show up a moment after their driver loads.
		for deadline := time.Now().Add(10 * time.Second); ; {
			if d, ok = chooseDataDisk(listDisks("/sys/class/block", "/dev")); ok || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if !ok {
			log.Warn("no data disk: no empty disk of 1 GiB or more, and none labelled " + machineconfig.DataLabel + "; " + dir + " is in memory and lost at power off")
			return nil
		}
	} else {
		dev, err := filepath.EvalSymlinks(dd.Device)
		for deadline := time.Now().Add(2 * time.Minute); err != nil && time.Now().Before(deadline); {
			time.Sleep(time.Second)
			dev, err = filepath.EvalSymlinks(dd.Device)
		}
		if err != nil {
			return fmt.Errorf("data disk %s: %w", dd.Device, err)
		}
		d = blockDisk{dev: dev}
		d.fstype, d.label = probeDevice(dev)
		if d.fstype != "" && d.fstype != "ext4" {
			return fmt.Errorf("data disk %s holds a %s file system; k2 formats only empty disks: wipe it or name another", dd.Device, d.fstype)
		}
		if d.fstype == "" && hasPartitionTable(dev) {
			return fmt.Errorf("data disk %s has a partition table; k2 formats only empty disks: wipe it or name another", dd.Device)
		}
	}
	if d.fstype == "" {
		log.Info("formatting the data disk", "device", d.dev, "filesystem", "ext4", "label", machineconfig.DataLabel)
		t := time.Now()
		cmd := exec.Command("mkfs.ext4", "-q", "-F", "-L", machineconfig.DataLabel, "-E", "lazy_itable_init=1,lazy_journal_init=1", "-m", "0", d.dev)
		if out, err := m.r.reaper.output(ctx, cmd); err != nil {
			return fmt.Errorf("formatting %s: %w: %s", d.dev, err, strings.TrimSpace(string(out)))
		}
		log.Info("formatted the data disk", "device", d.dev, "took", time.Since(t).Round(time.Millisecond))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(d.dev, dir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mounting the data disk %s on %s: %w", d.dev, dir, err)
	}
	m.mu.Lock()
	m.disk, m.diskPath = d.dev, dir
	m.mu.Unlock()
	log.Info("data disk mounted", "device", d.dev, "on", dir)
	return nil
}

// unmountDataDisk syncs and unmounts the data disk (lazily if busy).
func (m *machine) unmountDataDisk() {
	m.mu.Lock()
	dir := m.diskPath
	m.mu.Unlock()
	if dir == "" {
		return
	}
	unix.Sync()
	// Pods' mounts below it first.
	for _, mp := range mountsBelow(dir) {
		unix.Unmount(mp, unix.MNT_DETACH)
	}
	err := unix.Unmount(dir, 0)
	if err == unix.EBUSY {
		// The server and agent stopped; what still holds it (a shim the
		// agent could not stop) is stopped too.
		m.r.log.Warn("the data disk is busy; stopping every other process", "on", dir)
		killOthers()
		err = unix.Unmount(dir, 0)
	}
	if err != nil {
		m.r.log.Warn("unmounting the data disk; detaching it", "err", err)
		unix.Unmount(dir, unix.MNT_DETACH)
	} else {
		m.r.log.Info("data disk unmounted", "on", dir)
	}
	m.mu.Lock()
	m.disk, m.diskPath = "", ""
	m.mu.Unlock()
}

// mountsBelow lists mount points under dir, deepest first.
func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}
