// Package cidata writes NoCloud configuration volumes: small FAT12 file
// systems labelled CIDATA holding the files user-data and meta-data, as
// cloud-init's NoCloud source and k2 init (docs/os.md) read them. The image
// is made in memory, without mkfs or mtools, so a provider can build it on
// any machine and upload it to wherever its disks live; the same files give
// the same bytes.
package cidata

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
)

// Label is the volume label NoCloud sources look for (any case).
const Label = "CIDATA"

// File is one file of the volume's root directory.
type File struct {
	Name string // a long name; 1-64 characters, no '/', '\\' or control characters
	Data []byte
}

// NoCloud returns a CIDATA volume with user-data and meta-data; an empty
// metaData gets a minimal one naming instanceID (cloud-init wants the
// file; k2 init ignores it).
func NoCloud(userData []byte, instanceID string) ([]byte, error) {
	meta := fmt.Sprintf("instance-id: %s\nlocal-hostname: %s\n", instanceID, instanceID)
	return Image(Label, []File{{Name: "meta-data", Data: []byte(meta)}, {Name: "user-data", Data: userData}})
}

const (
	sectorSize  = 512
	rootEntries = 64 // 4 sectors of 16 entries
	maxClusters = 4084
	entrySize   = 32
	// fatDate is 2000-01-01, the fixed timestamp of every entry (the same
	// files give the same bytes).
	fatDate = (2000-1980)<<9 | 1<<5 | 1
)

// Image returns a FAT12 file system labelled label (at most 11 characters
// of A-Z, 0-9, '-' and '_') whose root directory holds files.
func Image(label string, files []File) ([]byte, error) {
	label = strings.ToUpper(label)
	if len(label) == 0 || len(label) > 11 || strings.IndexFunc(label, func(r rune) bool {
		return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	}) >= 0 {
		return nil, fmt.Errorf("volume label %q: want 1-11 characters of A-Z, 0-9, - and _", label)
	}
	entries := 1 // the volume label
	for i, f := range files {
		if err := checkName(f.Name); err != nil {
			return nil, err
		}
		if slices.ContainsFunc(files[:i], func(g File) bool { return strings.EqualFold(g.Name, f.Name) }) {
			return nil, fmt.Errorf("file name %q is used twice", f.Name)
		}
		entries += 1 + lfnCount(f.Name)
	}
	if entries > rootEntries {
		return nil, fmt.Errorf("%d files do not fit the root directory", len(files))
	}
	// The smallest cluster size that keeps the count FAT12's.
	var spc, clusters int
	for spc = 1; spc <= 64; spc *= 2 {
		clusters = 16 // slack: never an empty data area
		for _, f := range files {
			clusters += (len(f.Data) + spc*sectorSize - 1) / (spc * sectorSize)
		}
		if clusters <= maxClusters {
			break
		}
	}
	if spc > 64 {
		return nil, errors.New("the files are too large for a FAT12 volume (about 127 MiB at most)")
	}
	fatSectors := ((clusters+2)*3/2 + sectorSize - 1) / sectorSize
	rootSectors := rootEntries * entrySize / sectorSize
	dataStart := 1 + 2*fatSectors + rootSectors
	total := dataStart + clusters*spc
	img := make([]byte, total*sectorSize)

	bootSector(img[:sectorSize], label, spc, fatSectors, total)
	fat := make([]byte, fatSectors*sectorSize)
	setFAT12(fat, 0, 0xFF8)
	setFAT12(fat, 1, 0xFFF)
	root := img[(1+2*fatSectors)*sectorSize : dataStart*sectorSize]
	var dir []byte
	labelEntry := make([]byte, entrySize)
	copy(labelEntry, fmt.Sprintf("%-11s", label))
	labelEntry[11] = 0x08
	binary.LittleEndian.PutUint16(labelEntry[24:], fatDate)
	dir = append(dir, labelEntry...)
	next := 2 // the first data cluster
	for i, f := range files {
		n := (len(f.Data) + spc*sectorSize - 1) / (spc * sectorSize)
		first := 0
		if n > 0 {
			first = next
			for c := range n {
				v := next + c + 1
				if c == n-1 {
					v = 0xFFF
				}
				setFAT12(fat, next+c, v)
			}
			copy(img[(dataStart+(first-2)*spc)*sectorSize:], f.Data)
			next += n
		}
		short := shortName(i)
		dir = append(dir, lfnEntries(f.Name, short)...)
		e := make([]byte, entrySize)
		copy(e, short[:])
		e[11] = 0x20 // archive
		binary.LittleEndian.PutUint16(e[16:], fatDate)
		binary.LittleEndian.PutUint16(e[18:], fatDate)
		binary.LittleEndian.PutUint16(e[24:], fatDate)
		binary.LittleEndian.PutUint16(e[26:], uint16(first))
		binary.LittleEndian.PutUint32(e[28:], uint32(len(f.Data)))
		dir = append(dir, e...)
	}
	copy(root, dir)
	copy(img[sectorSize:], fat)
	copy(img[(1+fatSectors)*sectorSize:], fat)
	return img, nil
}

func checkName(n string) error {
	if n == "" || len(n) > 64 || n == "." || n == ".." || strings.ContainsFunc(n, func(r rune) bool {
		return r < 0x20 || strings.ContainsRune(`/\:*?"<>|`, r) || r > 0xFFFF
	}) {
		return fmt.Errorf("file name %q: want 1-64 characters, none of / \\ : * ? \" < > |", n)
	}
	return nil
}

func bootSector(b []byte, label string, spc, fatSectors, total int) {
	copy(b, []byte{0xEB, 0x3C, 0x90})
	copy(b[3:], "k2cidata")
	binary.LittleEndian.PutUint16(b[0x0B:], sectorSize)
	b[0x0D] = byte(spc)
	binary.LittleEndian.PutUint16(b[0x0E:], 1) // reserved sectors
	b[0x10] = 2                                // FATs
	binary.LittleEndian.PutUint16(b[0x11:], rootEntries)
	if total < 0x10000 {
		binary.LittleEndian.PutUint16(b[0x13:], uint16(total))
	} else {
		binary.LittleEndian.PutUint32(b[0x20:], uint32(total))
	}
	b[0x15] = 0xF8 // fixed disk
	binary.LittleEndian.PutUint16(b[0x16:], uint16(fatSectors))
	binary.LittleEndian.PutUint16(b[0x18:], 32) // sectors per track
	binary.LittleEndian.PutUint16(b[0x1A:], 64) // heads
	b[0x24] = 0x80
	b[0x26] = 0x29 // extended boot signature: serial, label and type follow
	binary.LittleEndian.PutUint32(b[0x27:], 0x6b32c1da)
	copy(b[0x2B:], fmt.Sprintf("%-11s", label))
	copy(b[0x36:], "FAT12   ")
	b[510], b[511] = 0x55, 0xAA
}

// setFAT12 sets cluster n's 12-bit entry.
func setFAT12(fat []byte, n, v int) {
	off := n * 3 / 2
	if n%2 == 0 {
		fat[off] = byte(v)
		fat[off+1] = fat[off+1]&0xF0 | byte(v>>8)&0x0F
	} else {
		fat[off] = fat[off]&0x0F | byte(v<<4)
		fat[off+1] = byte(v >> 4)
	}
}

// shortName is the 8.3 alias of file i; the long name is what systems
// show.
func shortName(i int) [11]byte {
	var s [11]byte
	copy(s[:], fmt.Sprintf("K2FILE%02d   ", i))
	return s
}

func lfnCount(name string) int {
	return (len(utf16.Encode([]rune(name))) + 1 + 12) / 13
}

// lfnEntries are the long-name entries of name, last part first, as they
// precede the short entry.
func lfnEntries(name string, short [11]byte) []byte {
	var sum byte
	for _, c := range short {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	u := utf16.Encode([]rune(name))
	n := lfnCount(name)
	padded := make([]uint16, n*13)
	for i := range padded {
		switch {
		case i < len(u):
			padded[i] = u[i]
		case i == len(u):
			padded[i] = 0
		default:
			padded[i] = 0xFFFF
		}
	}
	var out []byte
	for seq := n; seq >= 1; seq-- {
		e := make([]byte, entrySize)
		e[0] = byte(seq)
		if seq == n {
			e[0] |= 0x40
		}
		e[11], e[13] = 0x0F, sum
		part := padded[(seq-1)*13 : seq*13]
		offs := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, o := range offs {
			binary.LittleEndian.PutUint16(e[o:], part[i])
		}
		out = append(out, e...)
	}
	return out
}
