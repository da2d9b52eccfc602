package osimage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k2.dev/k2/internal/fatfs"
)

// The raw disk: an MBR partition table with one EFI system partition
// (FAT16, label K2OS) that holds the kernel, the initramfs and GRUB's
// configuration, booted by GRUB on both firmwares:
//
//	sector 0        GRUB's boot.img (BIOS), the partition table
//	sectors 1…      GRUB's core.img for i386-pc (BIOS), before the partition
//	1 MiB …         the ESP: EFI/BOOT/BOOTX64.EFI (GRUB for x86_64-efi),
//	                boot/grub/grub.cfg, k2/vmlinuz, k2/<initramfs>
//
// Both GRUB images are made by Debian's grub-mkimage with the modules
// they need built in and a first configuration that finds the partition
// by its label, so the disk boots as any disk of the machine.
const (
	espLabel    = "K2OS"
	espStartLBA = 2048
	grubModules = "part_msdos part_gpt fat normal linux search search_label configfile echo test serial terminal"
)

// grubPlatforms are the GRUB targets the disk boots with: directory under
// /usr/lib/grub, grub-mkimage format, Debian package.
var grubPlatforms = []struct{ dir, format, pkg, extra string }{
	{"i386-pc", "i386-pc", "grub-pc-bin", "biosdisk"},
	{"x86_64-efi", "x86_64-efi", "grub-efi-amd64-bin", "efi_gop all_video"},
}

func writeDisk(dst, kernel, initramfs, cmdline string) (FileInfo, error) {
	mkimage, err := exec.LookPath("grub-mkimage")
	if err != nil {
		return FileInfo{}, fmt.Errorf("grub-mkimage not found: a raw disk boots with GRUB (apt-get install grub-common grub-pc-bin grub-efi-amd64-bin)")
	}
	tmp, err := os.MkdirTemp("", "k2os-disk-")
	if err != nil {
		return FileInfo{}, err
	}
	defer os.RemoveAll(tmp)
	early := filepath.Join(tmp, "early.cfg")
	if err := os.WriteFile(early, []byte("search --no-floppy --label --set=root "+espLabel+"\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n"), 0o644); err != nil {
		return FileInfo{}, err
	}
	images := map[string]string{}
	for _, p := range grubPlatforms {
		if _, err := os.Stat(filepath.Join("/usr/lib/grub", p.dir, "moddep.lst")); err != nil {
			return FileInfo{}, fmt.Errorf("GRUB for %s is not installed (apt-get install %s)", p.dir, p.pkg)
		}
		out := filepath.Join(tmp, p.dir+".img")
		args := append([]string{"-O", p.format, "-p", "/boot/grub", "-c", early, "-o", out}, strings.Fields(grubModules+" "+p.extra)...)
		if b, err := exec.Command(mkimage, args...).CombinedOutput(); err != nil {
			return FileInfo{}, fmt.Errorf("grub-mkimage -O %s: %w: %s", p.format, err, b)
		}
		images[p.dir] = out
	}
	bootImg, err := os.ReadFile("/usr/lib/grub/i386-pc/boot.img")
	if err != nil {
		return FileInfo{}, fmt.Errorf("reading GRUB's boot.img: %w", err)
	}
	if len(bootImg) != 512 {
		return FileInfo{}, fmt.Errorf("GRUB's boot.img is %d bytes, not one sector", len(bootImg))
	}
	core, err := os.ReadFile(images["i386-pc"])
	if err != nil {
		return FileInfo{}, err
	}
	if len(core) > (espStartLBA-1)*512 {
		return FileInfo{}, fmt.Errorf("GRUB's core.img is %d bytes; it must fit before the partition", len(core))
	}
	initrdName := filepath.Base(initramfs)
	grubCfg := fmt.Sprintf("serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\nset timeout=1\nset default=0\nmenuentry \"k2 OS\" {\n\techo \"k2 OS: loading the kernel and initramfs\"\n\tlinux /k2/vmlinuz %s\n\tinitrd /k2/%s\n}\n", cmdline, initrdName)
	files := []fatfs.File{
		{Name: "EFI/BOOT/BOOTX64.EFI", Source: images["x86_64-efi"]},
		{Name: "boot/grub/grub.cfg", Data: []byte(grubCfg)},
		{Name: "k2/vmlinuz", Source: kernel},
		{Name: "k2/" + initrdName, Source: initramfs},
	}
	var payload int64
	for _, f := range files {
		if f.Source != "" {
			fi, err := os.Stat(f.Source)
			if err != nil {
				return FileInfo{}, err
			}
			payload += fi.Size()
		}
	}
	espSize := (payload*21/20 + 4<<20 + (1<<20 - 1)) &^ (1<<20 - 1) // 5 % and 4 MiB spare, whole MiB
	id := volumeID(kernel, initramfs)

	tmpDst := dst + ".tmp"
	f, err := os.OpenFile(tmpDst, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return FileInfo{}, err
	}
	defer os.Remove(tmpDst)
	defer f.Close()
	n, err := fatfs.Write(io.NewOffsetWriter(f, espStartLBA*512), files, fatfs.Options{Label: espLabel, VolumeID: id, Size: espSize, HiddenSectors: espStartLBA})
	if err != nil {
		return FileInfo{}, fmt.Errorf("writing the EFI system partition: %w", err)
	}
	mbr := make([]byte, 512)
	copy(mbr, bootImg[:440])
	binary.LittleEndian.PutUint32(mbr[440:], id)
	pe := mbr[446:462]
	pe[0] = 0x80                            // active, for BIOSes that look
	copy(pe[1:4], []byte{0xFE, 0xFF, 0xFF}) // CHS: use LBA
	pe[4] = 0xEF                            // EFI system partition
	copy(pe[5:8], []byte{0xFE, 0xFF, 0xFF})
	binary.LittleEndian.PutUint32(pe[8:], espStartLBA)
	binary.LittleEndian.PutUint32(pe[12:], uint32(n/512))
	mbr[510], mbr[511] = 0x55, 0xAA
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return FileInfo{}, err
	}
	if _, err := f.WriteAt(core, 512); err != nil {
		return FileInfo{}, err
	}
	if err := f.Close(); err != nil {
		return FileInfo{}, err
	}
	if err := os.Rename(tmpDst, dst); err != nil {
		return FileInfo{}, err
	}
	return hashFile(dst)
}

// volumeID derives the partition's and disk's ids from the contents, so
// the same image gets the same ids.
func volumeID(paths ...string) uint32 {
	h := sha256.New()
	for _, p := range paths {
		if f, err := os.Open(p); err == nil {
			io.Copy(h, f)
			f.Close()
		}
	}
	return binary.LittleEndian.Uint32(h.Sum(nil))
}

func hashFile(path string) (FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileInfo{}, err
	}
	return FileInfo{File: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
