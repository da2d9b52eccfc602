package artifact

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"

	"k2.dev/k2/internal/usererr"
)

// Save writes refs from the store to w as an OCI image-layout tarball
// (oci-layout, index.json, blobs/sha256/…; plain tar), each manifest tagged
// with its full reference in index.json. Tools that read OCI layouts
// (skopeo oci-archive:, k2 load) accept it.
func Save(ctx context.Context, s *Store, refs []string, w io.Writer) error {
	tmp, err := os.MkdirTemp("", "k2-save-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dst, err := oci.NewWithContext(ctx, tmp)
	if err != nil {
		return err
	}
	for _, ref := range refs {
		ref, err := NormalizeRef(ref)
		if err != nil {
			return err
		}
		if _, err := s.Resolve(ctx, ref); err != nil {
			return usererr.Wrap(usererr.KindUsage, err, "see k2 images")
		}
		if _, err := oras.Copy(ctx, s.oci, ref, dst, ref, oras.DefaultCopyOptions); err != nil {
			return fmt.Errorf("saving %s: %w", ref, err)
		}
	}
	return tarDir(tmp, w)
}

// tarDir writes dir as a plain tar with sorted entries and fixed metadata.
func tarDir(dir string, w io.Writer) error {
	var paths []string
	if err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		paths = append(paths, p)
		return nil
	}); err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: rel, Mode: 0o644, ModTime: epoch, Typeflag: tar.TypeReg, Size: fi.Size(), Format: tar.FormatPAX}
		if fi.IsDir() {
			hdr = &tar.Header{Name: rel + "/", Mode: 0o755, ModTime: epoch, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.IsDir() {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// Load copies every tagged manifest of the OCI image-layout tarball at path
// into the store and returns their references.
func Load(ctx context.Context, s *Store, path string) ([]string, error) {
	src, err := oci.NewFromTar(ctx, path)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading %s: %w", path, err), "pass a tarball written by k2 save (an OCI image layout)")
	}
	var refs []string
	if err := src.Tags(ctx, "", func(tags []string) error {
		refs = append(refs, tags...)
		return nil
	}); err != nil {
		return nil, err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var loaded []string
	for _, ref := range refs {
		if _, err := oras.Copy(ctx, src, ref, s.oci, ref, oras.DefaultCopyOptions); err != nil {
			return loaded, fmt.Errorf("loading %s: %w", ref, err)
		}
		loaded = append(loaded, ref)
	}
	if len(loaded) == 0 {
		return nil, usererr.New(usererr.KindInvalid, "%s holds no tagged artifacts", path)
	}
	sort.Strings(loaded)
	return loaded, nil
}
