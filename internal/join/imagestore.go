package join

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"k2.dev/k2/internal/atomicfile"
)

// ErrDigestMismatch means uploaded bytes do not hash to the digest they
// were sent under; nothing was kept.
var ErrDigestMismatch = errors.New("image archive does not match its digest")

// ErrNoImage means the store holds no archive with that digest.
var ErrNoImage = errors.New("no such image archive")

// Image is one vendored image archive: an OCI image-layout tar (the format
// of `ctr images import`) that a node imports into its container runtime.
type Image struct {
	// Ref is the image reference the archive was uploaded as, the one
	// workloads name.
	Ref string `json:"ref"`
	// Digest is "sha256:<hex>" of the archive itself, which is also the
	// digest of the artifact layer it came from.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

const (
	imageIndexFile = "index.json"
	imagePartGlob  = "*.part"
)

// ImageStore keeps image archives in a directory, one <hex>.tar per
// digest, and an index.json mapping each reference to its archive. Writes
// go through a temporary file that is hashed as it is written and renamed
// into place only when the digest matches, so the directory never holds a
// partial or wrong archive under a digest's name. Safe for concurrent use
// within one process.
type ImageStore struct {
	dir string

	mu    sync.Mutex
	byRef map[string]Image
}

// OpenImageStore opens (creating it if needed) the image store in dir. It
// removes temporary files a crash left behind and index entries whose
// archive is gone.
func OpenImageStore(dir string) (*ImageStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the image store: %w", err)
	}
	parts, _ := filepath.Glob(filepath.Join(dir, imagePartGlob))
	for _, p := range parts {
		_ = os.Remove(p)
	}
	s := &ImageStore{dir: dir, byRef: map[string]Image{}}
	b, err := os.ReadFile(filepath.Join(dir, imageIndexFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the image index: %w", err)
	}
	var idx struct{ Images []Image }
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("reading the image index %s: %w; remove it and upload the images again", filepath.Join(dir, imageIndexFile), err)
	}
	for _, im := range idx.Images {
		hexd, ok := digestHex(im.Digest)
		if !ok {
			continue
		}
		if _, err := os.Stat(s.path(hexd)); err != nil {
			continue
		}
		s.byRef[im.Ref] = im
	}
	return s, nil
}

func (s *ImageStore) path(hexd string) string { return filepath.Join(s.dir, hexd+".tar") }

// List returns the stored images sorted by reference.
func (s *ImageStore) List() []Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Image, 0, len(s.byRef))
	for _, im := range s.byRef {
		out = append(out, im)
	}
	slices.SortFunc(out, func(a, b Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out
}

// Stat returns the image stored under digest ("sha256:<hex>"), or
// ErrNoImage.
func (s *ImageStore) Stat(digest string) (Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statLocked(digest)
}

func (s *ImageStore) statLocked(digest string) (Image, error) {
	for _, im := range s.byRef {
		if im.Digest == digest {
			return im, nil
		}
	}
	return Image{}, fmt.Errorf("%w: %s", ErrNoImage, digest)
}

// Open opens the archive stored under digest; the caller closes it. An
// archive replaced meanwhile stays readable through the open file.
func (s *ImageStore) Open(digest string) (*os.File, Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, err := s.statLocked(digest)
	if err != nil {
		return nil, Image{}, err
	}
	hexd, _ := digestHex(digest)
	f, err := os.Open(s.path(hexd))
	if err != nil {
		return nil, Image{}, fmt.Errorf("opening image archive %s: %w", digest, err)
	}
	return f, im, nil
}

// Put stores the archive r under digest for ref. If the store already
// holds digest, r is not read and only ref is recorded (stored is false).
// Otherwise r is copied to a temporary file while hashing; a mismatch
// returns an error wrapping ErrDigestMismatch and keeps nothing. A ref
// that pointed at another archive now points at this one; the old archive
// is removed when no ref uses it any more.
func (s *ImageStore) Put(ref, digest string, r io.Reader) (im Image, stored bool, err error) {
	hexd, ok := digestHex(digest)
	if !ok {
		return Image{}, false, fmt.Errorf("digest %q: want sha256:<64 hex characters>", digest)
	}
	if err := validRef(ref); err != nil {
		return Image{}, false, err
	}
	if have, ok, err := s.addRef(ref, digest); ok {
		return have, false, err
	}
	tmp, err := os.CreateTemp(s.dir, hexd+".*.part")
	if err != nil {
		return Image{}, false, fmt.Errorf("storing image archive: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r)
	if err != nil {
		return Image{}, false, fmt.Errorf("receiving image archive %s: %w", ref, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != hexd {
		return Image{}, false, fmt.Errorf("%w: %s: received %d bytes hashing to sha256:%s, not %s", ErrDigestMismatch, ref, n, got, digest)
	}
	if err = tmp.Sync(); err != nil {
		return Image{}, false, fmt.Errorf("storing image archive: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return Image{}, false, fmt.Errorf("storing image archive: %w", err)
	}
	// Two uploads of one digest may both get here: each renames identical
	// bytes over the same name, so either order leaves a whole archive.
	// Rename and record under the lock, so that recordLocked never removes
	// an archive between the two.
	s.mu.Lock()
	defer s.mu.Unlock()
	if err = os.Rename(tmp.Name(), s.path(hexd)); err != nil {
		return Image{}, false, fmt.Errorf("storing image archive: %w", err)
	}
	im = Image{Ref: ref, Digest: digest, Size: n}
	return im, true, s.recordLocked(im)
}

// addRef records ref for digest if the store holds it; ok is false if not.
func (s *ImageStore) addRef(ref, digest string) (im Image, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, err = s.statLocked(digest)
	if err != nil {
		return Image{}, false, nil
	}
	im.Ref = ref
	return im, true, s.recordLocked(im)
}

// recordLocked points im.Ref at im, persists the index and removes an
// archive no ref uses any more.
func (s *ImageStore) recordLocked(im Image) error {
	old, had := s.byRef[im.Ref]
	if had && old == im {
		return nil
	}
	s.byRef[im.Ref] = im
	if err := s.saveLocked(); err != nil {
		if had {
			s.byRef[im.Ref] = old
		} else {
			delete(s.byRef, im.Ref)
		}
		return err
	}
	if had && old.Digest != im.Digest {
		if _, err := s.statLocked(old.Digest); errors.Is(err, ErrNoImage) {
			hexd, _ := digestHex(old.Digest)
			_ = os.Remove(s.path(hexd))
		}
	}
	return nil
}

func (s *ImageStore) saveLocked() error {
	idx := struct {
		Images []Image `json:"images"`
	}{Images: make([]Image, 0, len(s.byRef))}
	for _, im := range s.byRef {
		idx.Images = append(idx.Images, im)
	}
	slices.SortFunc(idx.Images, func(a, b Image) int { return strings.Compare(a.Ref, b.Ref) })
	b, _ := json.MarshalIndent(idx, "", "  ")
	if err := atomicfile.Write(filepath.Join(s.dir, imageIndexFile), b, 0o600); err != nil {
		return fmt.Errorf("writing the image index: %w", err)
	}
	return nil
}

// digestHex returns the hex part of "sha256:<64 lowercase hex>".
func digestHex(d string) (string, bool) {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h || !isHex(h) {
		return "", false
	}
	return h, true
}

// validRef checks that ref is a plausible image reference to record; the
// archive itself names the images a runtime imports.
func validRef(ref string) error {
	if ref == "" || len(ref) > 512 {
		return fmt.Errorf("image reference %q: want 1 to 512 characters", ref)
	}
	for _, r := range ref {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("image reference %q contains a space or control character", ref)
		}
	}
	return nil
}
