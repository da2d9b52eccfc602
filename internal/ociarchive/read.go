package ociarchive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Entry is one image listed in an archive's index.json.
type Entry struct {
	// Ref is the io.containerd.image.name annotation, or else the OCI
	// ref.name one.
	Ref       string
	Digest    v1.Hash
	MediaType string
	Size      int64
}

// List returns the images an archive names, reading it only up to its
// index.json (the second entry of archives this package writes).
func List(r io.Reader) ([]Entry, error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errors.New("reading image archive: no index.json; not an OCI image-layout archive")
		}
		if err != nil {
			return nil, fmt.Errorf("reading image archive: %w", err)
		}
		if path.Clean(hdr.Name) != "index.json" {
			continue
		}
		var idx index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return nil, fmt.Errorf("reading image archive: index.json: %w", err)
		}
		out := make([]Entry, 0, len(idx.Manifests))
		for _, d := range idx.Manifests {
			ref := d.Annotations[AnnotationImageName]
			if ref == "" {
				ref = d.Annotations[AnnotationRefName]
			}
			out = append(out, Entry{Ref: ref, Digest: d.Digest, MediaType: string(d.MediaType), Size: d.Size})
		}
		return out, nil
	}
}

// Read unpacks an archive into dir (which should be empty) and returns its
// images, read through go-containerregistry's layout package: their
// content stays in dir.
func Read(r io.Reader, dir string) ([]Named, error) {
	if err := extract(r, dir); err != nil {
		return nil, err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading image archive: %w", err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading image archive: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading image archive: %w", err)
	}
	var out []Named
	for _, d := range im.Manifests {
		img, err := p.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading image archive: image %s: %w", d.Digest, err)
		}
		ref := d.Annotations[AnnotationImageName]
		if ref == "" {
			ref = d.Annotations[AnnotationRefName]
		}
		out = append(out, Named{Ref: ref, Image: img})
	}
	return out, nil
}

// extract writes the regular files and directories of a tar under dir,
// refusing names that leave it.
func extract(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading image archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("reading image archive: entry %q leaves the archive", hdr.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("reading image archive: %s: %w", hdr.Name, err)
			}
		}
	}
}
