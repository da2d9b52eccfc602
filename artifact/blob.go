package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// Single-file artifacts, such as a control-plane backup pushed with
// 'k2 backup --push': a manifest with one layer holding the file.
const (
	BackupArtifactType = "application/vnd.k2.backup.v1"
	BackupMediaType    = "application/vnd.k2.backup.v1.tar+gzip"
)

// StoreFile packs the file at path as a one-layer artifact of artifactType
// in s and tags it ref. The file is hashed first and then streamed, so its
// size does not matter.
func StoreFile(ctx context.Context, s *Store, ref, artifactType, mediaType, path string, annotations map[string]string) (ocispec.Descriptor, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layer := ocispec.Descriptor{MediaType: mediaType, Digest: digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), Size: n,
		Annotations: map[string]string{AnnotationTitle: filepath.Base(path)}}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ocispec.Descriptor{}, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer unlock()
	if err := pushIfMissing(ctx, s.oci, layer, f); err != nil {
		return ocispec.Descriptor{}, err
	}
	empty := ocispec.DescriptorEmptyJSON
	if err := pushIfMissing(ctx, s.oci, empty, bytes.NewReader(empty.Data)); err != nil {
		return ocispec.Descriptor{}, err
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: empty.MediaType, Digest: empty.Digest, Size: empty.Size},
		Layers:       []ocispec.Descriptor{layer},
		Annotations:  annotations,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	md.ArtifactType = artifactType
	if err := pushIfMissing(ctx, s.oci, md, bytes.NewReader(mb)); err != nil {
		return ocispec.Descriptor{}, err
	}
	return md, s.oci.Tag(ctx, md, ref)
}

// CopyFile writes the single layer of the one-layer artifact ref, which
// must be of artifactType, from s to w.
func CopyFile(ctx context.Context, s *Store, ref, artifactType string, w io.Writer) error {
	d, err := s.Resolve(ctx, ref)
	if err != nil {
		return err
	}
	m, err := fetchManifest(ctx, s.oci, d)
	if err != nil {
		return err
	}
	if m.ArtifactType != artifactType || len(m.Layers) != 1 {
		return fmt.Errorf("%s is not a %s artifact (artifactType %q, %d layers)", ref, artifactType, m.ArtifactType, len(m.Layers))
	}
	rc, err := s.oci.Fetch(ctx, m.Layers[0])
	if err != nil {
		return err
	}
	defer rc.Close()
	vr := content.NewVerifyReader(rc, m.Layers[0])
	if _, err := io.Copy(w, vr); err != nil {
		return err
	}
	return vr.Verify()
}

func pushIfMissing(ctx context.Context, st content.Storage, d ocispec.Descriptor, r io.Reader) error {
	ok, err := st.Exists(ctx, d)
	if err != nil || ok {
		return err
	}
	return st.Push(ctx, d, r)
}
