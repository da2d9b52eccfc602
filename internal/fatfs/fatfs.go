// Package fatfs writes FAT16 file-system images: the NoCloud cidata volume
// that carries a machine config to k2 OS (see Cidata), and the EFI system
// partition of k2 OS's raw disk. Images are reproducible: fixed times, a
// volume id from the caller, files laid out in name order.
//
// It writes only what those need: a FAT16 volume (at least ~2 MiB) with
// files in nested directories, long (VFAT) names, and a volume label.
// Providers may import it (it is under internal/, not provision/).
package fatfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"unicode/utf16"
)

// File is one file of the image. Name is a slash-separated path
// ("EFI/BOOT/BOOTX64.EFI"); directories are made as needed. The contents
// come from Data, or from the host file Source.
type File struct {
	Name   string
	Data   []byte
	Source string
}

// Options describe the volume.
type Options struct {
	// Label is the volume label (at most 11 characters, stored upper case
	// as FAT does; "cidata" reads back as CIDATA, which NoCloud accepts).
	Label string
	// VolumeID is the serial number; fix it for reproducible images.
	VolumeID uint32
	// Size is the image size in bytes; 0 picks one that fits the files.
	Size int64
	// HiddenSectors is the partition's first sector on its disk (0 for a
	// whole-disk image).
	HiddenSectors uint32
}

const (
	sectorSize  = 512
	rootEntries = 512
	dirEntSize  = 32
	maxClusters = 65524
	minClusters = 4085
	// 2000-01-01 00:00:00 in FAT's packed date and time.
	fixedDate = (2000-1980)<<9 | 1<<5 | 1
	fixedTime = 0
)

// node is a file or directory of the tree being written.
type node struct {
	name     string
	dir      bool
	file     File
	size     int64
	children []*node
	parent   *node
	cluster  uint32 // first cluster (0 for an empty file)
	clusters uint32
}

// Write writes a FAT16 image of files to w (a file, or a partition of
// one). It returns the image size.
func Write(w io.WriterAt, files []File, o Options) (int64, error) {
	root := &node{dir: true}
	for _, f := range files {
		if err := root.add(f); err != nil {
			return 0, err
		}
	}
	root.sortAll()
	// Sizes, then the cluster size that keeps FAT16's cluster count.
	var payload int64
	if err := root.walk(func(n *node) error {
		if n.dir {
			return nil
		}
		if n.file.Data != nil || n.file.Source == "" {
			n.size = int64(len(n.file.Data))
		} else {
			fi, err := os.Stat(n.file.Source)
			if err != nil {
				return err
			}
			n.size = fi.Size()
		}
		payload += n.size
		return nil
	}); err != nil {
		return 0, err
	}
	size := o.Size
	if size == 0 {
		size = max(4<<20, (payload*11/10+(1<<20))&^(sectorSize-1))
	}
	total := uint32(size / sectorSize)
	var spc uint32 // sectors per cluster
	for spc = 1; spc <= 128; spc *= 2 {
		if total/spc <= maxClusters {
			break
		}
	}
	if spc > 128 {
		return 0, fmt.Errorf("%d bytes is too large for FAT16", size)
	}
	rootSectors := uint32(rootEntries * dirEntSize / sectorSize)
	// Sectors per FAT: enough entries for every cluster.
	fatSectors := uint32(1)
	var clusters uint32
	for {
		data := total - 1 - 2*fatSectors - rootSectors
		clusters = data / spc
		if (clusters+2)*2 <= fatSectors*sectorSize {
			break
		}
		fatSectors++
	}
	if clusters < minClusters {
		return 0, fmt.Errorf("%d bytes is too small for FAT16 (at least %d clusters); give a larger size", size, minClusters)
	}
	clusterBytes := int64(spc) * sectorSize
	// Allocate clusters: directories and files in tree order.
	next := uint32(2)
	alloc := func(bytes int64) (uint32, uint32) {
		n := uint32((bytes + clusterBytes - 1) / clusterBytes)
		if n == 0 {
			return 0, 0
		}
		first := next
		next += n
		return first, n
	}
	if err := root.walk(func(n *node) error {
		if n == root {
			return nil
		}
		if n.dir {
			n.cluster, n.clusters = alloc(int64(n.dirEntries()) * dirEntSize)
		} else {
			n.cluster, n.clusters = alloc(n.size)
		}
		return nil
	}); err != nil {
		return 0, err
	}
	if next-2 > clusters {
		return 0, fmt.Errorf("the files need %d MiB; the image has %d MiB", (int64(next-2)*clusterBytes)>>20, size>>20)
	}
	fatStart := int64(1) * sectorSize
	rootStart := fatStart + int64(2*fatSectors)*sectorSize
	dataStart := rootStart + int64(rootSectors)*sectorSize
	clusterOff := func(c uint32) int64 { return dataStart + int64(c-2)*clusterBytes }

	// Boot sector.
	bs := make([]byte, sectorSize)
	copy(bs, []byte{0xEB, 0x3C, 0x90})
	copy(bs[3:], "K2 FAT16")
	binary.LittleEndian.PutUint16(bs[0x0B:], sectorSize)
	bs[0x0D] = byte(spc)
	binary.LittleEndian.PutUint16(bs[0x0E:], 1)
	bs[0x10] = 2
	binary.LittleEndian.PutUint16(bs[0x11:], rootEntries)
	if total < 1<<16 {
		binary.LittleEndian.PutUint16(bs[0x13:], uint16(total))
	} else {
		binary.LittleEndian.PutUint32(bs[0x20:], total)
	}
	bs[0x15] = 0xF8
	binary.LittleEndian.PutUint16(bs[0x16:], uint16(fatSectors))
	binary.LittleEndian.PutUint16(bs[0x18:], 63)
	binary.LittleEndian.PutUint16(bs[0x1A:], 255)
	binary.LittleEndian.PutUint32(bs[0x1C:], o.HiddenSectors)
	bs[0x24] = 0x80
	bs[0x26] = 0x29
	binary.LittleEndian.PutUint32(bs[0x27:], o.VolumeID)
	copy(bs[0x2B:0x36], padLabel(o.Label))
	copy(bs[0x36:0x3E], "FAT16   ")
	// Not bootable: boot code that asks the BIOS for the next device.
	copy(bs[0x3E:], []byte{0xCD, 0x18, 0xEB, 0xFE})
	bs[510], bs[511] = 0x55, 0xAA
	if _, err := w.WriteAt(bs, 0); err != nil {
		return 0, err
	}

	// FAT.
	fat := make([]byte, fatSectors*sectorSize)
	binary.LittleEndian.PutUint16(fat[0:], 0xFFF8)
	binary.LittleEndian.PutUint16(fat[2:], 0xFFFF)
	root.walk(func(n *node) error {
		for i := uint32(0); i < n.clusters; i++ {
			c := n.cluster + i
			v := uint16(c + 1)
			if i == n.clusters-1 {
				v = 0xFFFF
			}
			binary.LittleEndian.PutUint16(fat[2*c:], v)
		}
		return nil
	})
	for i := int64(0); i < 2; i++ {
		if _, err := w.WriteAt(fat, fatStart+i*int64(len(fat))); err != nil {
			return 0, err
		}
	}

	// Directories, then file contents.
	rootDir := make([]byte, rootSectors*sectorSize)
	off := 0
	if o.Label != "" {
		copy(rootDir, shortEntry(padLabel(o.Label), 0x08, 0, 0))
		off = dirEntSize
	}
	copy(rootDir[off:], root.entries(nil))
	if len(root.children)+1 > rootEntries/2 {
		return 0, errors.New("too many files in the root directory")
	}
	if _, err := w.WriteAt(rootDir, rootStart); err != nil {
		return 0, err
	}
	err := root.walk(func(n *node) error {
		if n == root || n.clusters == 0 {
			return nil
		}
		if n.dir {
			b := n.entries(n)
			buf := make([]byte, int64(n.clusters)*clusterBytes)
			copy(buf, b)
			_, err := w.WriteAt(buf, clusterOff(n.cluster))
			return err
		}
		return n.writeContents(w, clusterOff(n.cluster))
	})
	if err != nil {
		return 0, err
	}
	// The image's last byte, so a file has its full size.
	if _, err := w.WriteAt([]byte{0}, int64(total)*sectorSize-1); err != nil {
		return 0, err
	}
	return int64(total) * sectorSize, nil
}

func (n *node) add(f File) error {
	parts := strings.Split(strings.Trim(path.Clean("/"+f.Name), "/"), "/")
	cur := n
	for i, p := range parts {
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("bad file name %q", f.Name)
		}
		var child *node
		for _, c := range cur.children {
			if strings.EqualFold(c.name, p) {
				child = c
			}
		}
		last := i == len(parts)-1
		if child == nil {
			child = &node{name: p, dir: !last, parent: cur}
			cur.children = append(cur.children, child)
		} else if last || !child.dir {
			return fmt.Errorf("%q is given twice", f.Name)
		}
		if last {
			child.file = f
		}
		cur = child
	}
	return nil
}

func (n *node) sortAll() {
	sort.Slice(n.children, func(i, j int) bool { return n.children[i].name < n.children[j].name })
	for _, c := range n.children {
		c.sortAll()
	}
}

// walk visits n and its descendants, parents first.
func (n *node) walk(f func(*node) error) error {
	if err := f(n); err != nil {
		return err
	}
	for _, c := range n.children {
		if err := c.walk(f); err != nil {
			return err
		}
	}
	return nil
}

// dirEntries is how many 32-byte entries n's directory needs.
func (n *node) dirEntries() int {
	k := 2 // . and ..
	for _, c := range n.children {
		k += 1 + lfnCount(c.name)
	}
	return k
}

// entries returns the directory entries of n's children ("." and ".."
// first for a subdirectory; self is nil for the root).
func (n *node) entries(self *node) []byte {
	var b bytes.Buffer
	if self != nil {
		b.Write(shortEntry([]byte(".          "), 0x10, self.cluster, 0))
		parent := uint32(0) // the root
		if self.parent != nil {
			parent = self.parent.cluster
		}
		b.Write(shortEntry([]byte("..         "), 0x10, parent, 0))
	}
	used := map[string]bool{}
	for _, c := range n.children {
		short := shortName(c.name, used)
		if lfnCount(c.name) > 0 {
			b.Write(lfnEntries(c.name, short))
		}
		attr := byte(0x20)
		if c.dir {
			attr = 0x10
		}
		size := uint32(c.size)
		if c.dir {
			size = 0
		}
		b.Write(shortEntry(short, attr, c.cluster, size))
	}
	return b.Bytes()
}

func (n *node) writeContents(w io.WriterAt, off int64) error {
	if n.file.Data != nil || n.file.Source == "" {
		_, err := w.WriteAt(n.file.Data, off)
		return err
	}
	f, err := os.Open(n.file.Source)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.NewOffsetWriter(w, off), f)
	return err
}

func shortEntry(name []byte, attr byte, cluster, size uint32) []byte {
	e := make([]byte, dirEntSize)
	copy(e, name[:11])
	e[11] = attr
	binary.LittleEndian.PutUint16(e[14:], fixedTime)
	binary.LittleEndian.PutUint16(e[16:], fixedDate)
	binary.LittleEndian.PutUint16(e[18:], fixedDate)
	binary.LittleEndian.PutUint16(e[22:], fixedTime)
	binary.LittleEndian.PutUint16(e[24:], fixedDate)
	binary.LittleEndian.PutUint16(e[26:], uint16(cluster))
	binary.LittleEndian.PutUint32(e[28:], size)
	return e
}

func padLabel(l string) []byte {
	b := []byte(strings.ToUpper(l) + "           ")
	return b[:11]
}

// validShort reports whether name is already a valid upper-case 8.3 name.
func validShort(name string) bool {
	base, ext, _ := strings.Cut(name, ".")
	if len(base) == 0 || len(base) > 8 || len(ext) > 3 || strings.Contains(ext, ".") {
		return false
	}
	for _, r := range base + ext {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-~!#$%&'()@^`{}", r)) {
			return false
		}
	}
	return true
}

// lfnCount is how many long-name entries name needs (0 for a valid 8.3).
func lfnCount(name string) int {
	if validShort(name) {
		return 0
	}
	return (len(utf16.Encode([]rune(name))) + 12) / 13
}

// shortName makes the 11-byte 8.3 name for name, unique in its directory.
func shortName(name string, used map[string]bool) []byte {
	if validShort(name) {
		base, ext, _ := strings.Cut(name, ".")
		s := fmt.Sprintf("%-8s%-3s", base, ext)
		used[s] = true
		return []byte(s)
	}
	clean := func(s string) string {
		var b strings.Builder
		for _, r := range strings.ToUpper(s) {
			switch {
			case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("_-~!#$%&'()@^`{}", r):
				b.WriteRune(r)
			case r == ' ', r == '.':
			default:
				b.WriteRune('_')
			}
		}
		return b.String()
	}
	base, ext := name, ""
	if i := strings.LastIndex(name, "."); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	base, ext = clean(base), clean(ext)
	if len(ext) > 3 {
		ext = ext[:3]
	}
	for i := 1; ; i++ {
		suffix := fmt.Sprintf("~%d", i)
		b := base
		if len(b) > 8-len(suffix) {
			b = b[:8-len(suffix)]
		}
		s := fmt.Sprintf("%-8s%-3s", b+suffix, ext)
		if !used[s] {
			used[s] = true
			return []byte(s)
		}
	}
}

// lfnEntries are the VFAT long-name entries for name, last part first.
func lfnEntries(name string, short []byte) []byte {
	var sum byte
	for _, c := range short[:11] {
		sum = (sum>>1 | sum<<7) + c
	}
	u := utf16.Encode([]rune(name))
	n := (len(u) + 12) / 13
	var b bytes.Buffer
	for seq := n; seq >= 1; seq-- {
		e := make([]byte, dirEntSize)
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11] = 0x0F
		e[13] = sum
		chars := make([]uint16, 13)
		for i := range chars {
			k := (seq-1)*13 + i
			switch {
			case k < len(u):
				chars[i] = u[k]
			case k == len(u):
				chars[i] = 0
			default:
				chars[i] = 0xFFFF
			}
		}
		for i, c := range chars {
			var off int
			switch {
			case i < 5:
				off = 1 + 2*i
			case i < 11:
				off = 14 + 2*(i-5)
			default:
				off = 28 + 2*(i-11)
			}
			binary.LittleEndian.PutUint16(e[off:], c)
		}
		b.Write(e)
	}
	return b.Bytes()
}
