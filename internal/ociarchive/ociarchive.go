// Package ociarchive writes and reads container images as OCI image-layout
// tar archives: the format of `skopeo copy … oci-archive:`, `docker save`
// (since 25) and the input containerd's client.Import and
// `ctr images import` accept.
//
// An archive holds, in this order: the "oci-layout" file, "index.json"
// (one entry per image, annotated with its name), the directories "blobs/"
// and "blobs/sha256/", then every blob (manifests, configs, layers) once,
// sorted by digest. Every header has mtime 0, uid/gid 0 and a fixed mode,
// so the same images always give the same bytes.
package ociarchive

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations set on each index.json entry.
const (
	// AnnotationRefName is the OCI image-layout name annotation; k2 sets it
	// to the full reference, like containerd's exporter with its default
	// options.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName is the name containerd gives the image on import
	// ("k2.dev/pause:3.10", "docker.io/library/nginx:1.27").
	AnnotationImageName = "io.containerd.image.name"
)

// Named is an image and the full reference it is stored under.
type Named struct {
	Ref   string
	Image v1.Image
}

// index is index.json.
type index struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     types.MediaType `json:"mediaType"`
	Manifests     []v1.Descriptor `json:"manifests"`
}

// layoutFile is the content of the oci-layout file.
const layoutFile = `{"imageLayoutVersion":"1.0.0"}`

// blob is one blob to write, opened only when its turn comes.
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// Write writes imgs to w as an OCI image-layout tar. Layers are streamed
// (a remote image's layers are fetched while writing) and checked against
// their digest and size. Refs must be distinct and non-empty.
func Write(w io.Writer, imgs []Named) error {
	idx := index{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}}
	blobs := map[v1.Hash]blob{}
	seen := map[string]bool{}
	addBytes := func(b []byte) v1.Hash {
		h, n, _ := v1.SHA256(bytes.NewReader(b))
		blobs[h] = blob{digest: h, size: n, open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }}
		return h
	}
	for _, n := range imgs {
		if n.Ref == "" {
			return errors.New("writing image archive: an image has no reference")
		}
		if seen[n.Ref] {
			return fmt.Errorf("writing image archive: reference %s given twice", n.Ref)
		}
		seen[n.Ref] = true
		raw, err := n.Image.RawManifest()
		if err != nil {
			return fmt.Errorf("reading manifest of %s: %w", n.Ref, err)
		}
		mt, err := n.Image.MediaType()
		if err != nil {
			return fmt.Errorf("reading media type of %s: %w", n.Ref, err)
		}
		cfg, err := n.Image.RawConfigFile()
		if err != nil {
			return fmt.Errorf("reading config of %s: %w", n.Ref, err)
		}
		mh := addBytes(raw)
		addBytes(cfg)
		layers, err := n.Image.Layers()
		if err != nil {
			return fmt.Errorf("reading layers of %s: %w", n.Ref, err)
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return fmt.Errorf("reading layer of %s: %w", n.Ref, err)
			}
			size, err := l.Size()
			if err != nil {
				return fmt.Errorf("reading layer %s of %s: %w", d, n.Ref, err)
			}
			blobs[d] = blob{digest: d, size: size, open: l.Compressed}
		}
		desc := v1.Descriptor{MediaType: mt, Digest: mh, Size: int64(len(raw)),
			Annotations: map[string]string{AnnotationRefName: n.Ref, AnnotationImageName: n.Ref}}
		if cf, err := n.Image.ConfigFile(); err == nil && cf.OS != "" {
			desc.Platform = &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
		}
		idx.Manifests = append(idx.Manifests, desc)
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	if err := writeFile(tw, "oci-layout", []byte(layoutFile)); err != nil {
		return err
	}
	if err := writeFile(tw, "index.json", idxJSON); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(header(tar.TypeDir, d, 0o755, 0)); err != nil {
			return err
		}
	}
	sorted := make([]blob, 0, len(blobs))
	for _, b := range blobs {
		sorted = append(sorted, b)
	}
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].digest.String() < sorted[j].digest.String() })
	for _, b := range sorted {
		if err := writeBlob(tw, b); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeBlob streams one blob into the archive and verifies its digest.
func writeBlob(tw *tar.Writer, b blob) error {
	if b.digest.Algorithm != "sha256" {
		return fmt.Errorf("writing blob %s: only sha256 digests are supported", b.digest)
	}
	if err := tw.WriteHeader(header(tar.TypeReg, "blobs/sha256/"+b.digest.Hex, 0o644, b.size)); err != nil {
		return err
	}
	rc, err := b.open()
	if err != nil {
		return fmt.Errorf("opening blob %s: %w", b.digest, err)
	}
	defer rc.Close()
	h, n, err := v1.SHA256(io.TeeReader(io.LimitReader(rc, b.size+1), tw))
	if err != nil {
		return fmt.Errorf("copying blob %s: %w", b.digest, err)
	}
	if n != b.size || h != b.digest {
		return fmt.Errorf("copying blob %s: got %d bytes with digest %s, want %d bytes", b.digest, n, h, b.size)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(header(tar.TypeReg, name, 0o644, int64(len(data)))); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// header is a reproducible tar header: no times, owners or user names.
func header(typ byte, name string, mode, size int64) *tar.Header {
	return &tar.Header{Typeflag: typ, Name: name, Mode: mode, Size: size,
		ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
}
