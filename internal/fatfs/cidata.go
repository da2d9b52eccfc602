package fatfs

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// CidataSize is the size of a cidata image: FAT16's smallest, with room
// for a machine config of up to 1 MiB.
const CidataSize = 4 << 20

// Cidata returns a NoCloud config volume, as cloud-init and k2 OS read it:
// a FAT image labelled cidata holding user-data (the machine config, as
// the provider got it in Bootstrap.UserData) and meta-data naming the
// instance. The same inputs give the same bytes.
func Cidata(userData []byte, instanceID string) ([]byte, error) {
	if len(userData) > CidataSize/2 {
		return nil, fmt.Errorf("user-data of %d bytes does not fit a cidata volume", len(userData))
	}
	meta := []byte(fmt.Sprintf("instance-id: %s\n", instanceID))
	sum := sha256.Sum256(append(append([]byte{}, userData...), meta...))
	var img memImage
	if _, err := Write(&img, []File{{Name: "user-data", Data: userData}, {Name: "meta-data", Data: meta}},
		Options{Label: "cidata", VolumeID: binary.LittleEndian.Uint32(sum[:4]), Size: CidataSize}); err != nil {
		return nil, err
	}
	return img.b, nil
}

// memImage is an in-memory io.WriterAt.
type memImage struct{ b []byte }

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}
