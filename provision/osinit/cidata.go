package osinit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"k2.dev/k2/provision/machineconfig"
)

// CIDataLabel is the file-system label of a NoCloud config volume.
const CIDataLabel = "cidata"

// CIDataSource reads the file user-data from a volume labelled cidata
// (FAT or ISO 9660, any case), as cloud-init's NoCloud source does: the
// volume is mounted read-only for the read and unmounted again.
type CIDataSource struct {
	// SysBlock lists block devices; default /sys/class/block.
	SysBlock string
	// DevDir holds their nodes; default /dev.
	DevDir string
}

// Name names the source in messages.
func (s *CIDataSource) Name() string { return "cidata" }

// Fetch reads the machine config from the cidata volume.
func (s *CIDataSource) Fetch(ctx context.Context) ([]byte, error) {
	dev, fstype, err := s.find()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "k2-cidata-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	if err := unix.Mount(dev, dir, fstype, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return nil, fmt.Errorf("mounting %s (%s): %w", dev, fstype, err)
	}
	defer unix.Unmount(dir, 0)
	b, err := readFileFold(dir, "user-data")
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s is labelled %s but has no user-data file", dev, CIDataLabel)
	}
	return b, err
}

// find returns the first block device (by name) labelled cidata.
func (s *CIDataSource) find() (dev, fstype string, err error) {
	sys, devDir := s.SysBlock, s.DevDir
	if sys == "" {
		sys = "/sys/class/block"
	}
	if devDir == "" {
		devDir = "/dev"
	}
	entries, err := os.ReadDir(sys)
	if err != nil {
		return "", "", fmt.Errorf("listing block devices: %w: %w", err, ErrNoConfig)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(devDir, n)
		fs, label := probeDevice(p)
		if strings.EqualFold(label, CIDataLabel) && (fs == "vfat" || fs == "iso9660") {
			return p, fs, nil
		}
	}
	return "", "", fmt.Errorf("no volume labelled %s: %w", CIDataLabel, ErrNoConfig)
}

func probeDevice(path string) (fstype, label string) {
	f, err := os.Open(path)
	if err != nil {
		return "", ""
	}
	defer f.Close()
	return ProbeLabel(f)
}

// ProbeLabel identifies the file system at the start of r and returns its
// type (vfat, iso9660, ext4) and label; "" when it is none of these.
func ProbeLabel(r io.ReaderAt) (fstype, label string) {
	b := make([]byte, 0x8800)
	n, _ := r.ReadAt(b, 0)
	b = b[:n]
	trim := func(s []byte) string { return strings.TrimRight(string(bytes.TrimRight(s, "\x00")), " ") }
	switch {
	case len(b) >= 0x8028+32 && b[0x8000] == 1 && string(b[0x8001:0x8006]) == "CD001":
		return "iso9660", trim(b[0x8028 : 0x8028+32])
	case len(b) >= 0x478+16 && binary.LittleEndian.Uint16(b[0x438:]) == 0xEF53:
		return "ext4", trim(b[0x478 : 0x478+16])
	case len(b) >= 512 && b[510] == 0x55 && b[511] == 0xAA:
		if string(b[0x52:0x57]) == "FAT32" && b[0x42] == 0x29 {
			return "vfat", fatLabel(trim(b[0x47 : 0x47+11]))
		}
		if string(b[0x36:0x39]) == "FAT" && b[0x26] == 0x29 {
			return "vfat", fatLabel(trim(b[0x2b : 0x2b+11]))
		}
	}
	return "", ""
}

func fatLabel(s string) string {
	if s == "NO NAME" {
		return ""
	}
	return s
}

// readFileFold reads dir/name, matching the name without regard to case
// (an ISO 9660 volume without Joliet or Rock Ridge shows USER-DATA).
func readFileFold(dir, name string) ([]byte, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		n := strings.TrimSuffix(e.Name(), ";1")
		if strings.EqualFold(n, name) || strings.EqualFold(n, strings.ReplaceAll(name, "-", "_")) {
			f, err := os.Open(filepath.Join(dir, e.Name()))
			if err != nil {
				return nil, err
			}
			defer f.Close()
			return io.ReadAll(io.LimitReader(f, machineconfig.MaxSize+1))
		}
	}
	return nil, os.ErrNotExist
}
