package artifact

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"

	"k2.dev/k2/internal/usererr"
)

// Store is k2's local artifact store: an OCI image layout directory
// ($K2_HOME/store) whose index tags manifests with their full reference
// ("localhost:5000/hello:v1", "k2/base:v1.37").
type Store struct {
	// Logger, if not nil, hears about waits for the store's write lock.
	Logger *slog.Logger
	dir    string
	oci    *oci.Store
}

// OpenStore opens (creating if needed) the OCI layout store in dir.
func OpenStore(ctx context.Context, dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating store: %w", err)
	}
	s, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", dir, err)
	}
	return &Store{dir: dir, oci: s}, nil
}

// StoreDir returns the store directory under a k2 home.
func StoreDir(home string) string { return filepath.Join(home, "store") }

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Storage returns the store as an oras-go target, for copying.
func (s *Store) Storage() *oci.Store { return s.oci }

// NormalizeRef returns ref with ":latest" added when it names neither a tag
// nor a digest. It rejects empty references and spaces.
func NormalizeRef(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return "", usererr.New(usererr.KindUsage, "invalid reference %q; use name:tag or host/repo:tag", ref)
	}
	if strings.Contains(ref, "@") {
		return ref, nil
	}
	last := ref[strings.LastIndex(ref, "/")+1:]
	if !strings.Contains(last, ":") {
		ref += ":latest"
	}
	return ref, nil
}

// Resolve returns the manifest descriptor tagged ref. A digest reference
// ("name@sha256:…") resolves if the manifest is in the store. A missing
// reference is an error wrapping [ErrNotFound].
func (s *Store) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := s.oci.Resolve(ctx, ref)
	if err == nil && s.has(ctx, d) {
		return d, nil
	}
	if err == nil {
		err = errdef.ErrNotFound // a digest the store knew, whose blob was removed
	}
	if i := strings.Index(ref, "@"); i >= 0 && errors.Is(err, errdef.ErrNotFound) {
		if d, err2 := s.oci.Resolve(ctx, ref[i+1:]); err2 == nil && s.has(ctx, d) {
			return d, nil
		}
	}
	if errors.Is(err, errdef.ErrNotFound) {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, ErrNotFound)
	}
	return ocispec.Descriptor{}, fmt.Errorf("resolving %s: %w", ref, err)
}

// has reports whether the manifest d is really in the store.
func (s *Store) has(ctx context.Context, d ocispec.Descriptor) bool {
	ok, err := s.oci.Exists(ctx, d)
	return err == nil && ok
}

// Tag tags the manifest desc as ref.
func (s *Store) Tag(ctx context.Context, desc ocispec.Descriptor, ref string) error {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return s.oci.Tag(ctx, desc, ref)
}

// Remove untags ref and deletes the blobs no other tag uses.
func (s *Store) Remove(ctx context.Context, ref string) error {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := s.oci.Untag(ctx, ref); err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return fmt.Errorf("removing %s: %w", ref, err)
	}
	return s.oci.GC(ctx)
}

// Image is one tagged artifact in the store.
type Image struct {
	Ref          string `json:"ref"`
	Digest       string `json:"digest"`
	ArtifactType string `json:"artifactType"`
	// Size is the manifest, config and layers together, in bytes.
	Size   int64 `json:"size"`
	Layers int   `json:"layers"`
}

// List returns every tagged artifact, sorted by reference.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	var refs []string
	if err := s.oci.Tags(ctx, "", func(tags []string) error {
		refs = append(refs, tags...)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing store: %w", err)
	}
	sort.Strings(refs)
	var out []Image
	for _, ref := range refs {
		if strings.HasPrefix(ref, "sha256:") {
			continue
		}
		d, err := s.oci.Resolve(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", ref, err)
		}
		m, err := fetchManifest(ctx, s.oci, d)
		if err != nil {
			return nil, err
		}
		img := Image{Ref: ref, Digest: d.Digest.String(), ArtifactType: m.ArtifactType,
			Size: d.Size + m.Config.Size, Layers: len(m.Layers)}
		for _, l := range m.Layers {
			img.Size += l.Size
		}
		out = append(out, img)
	}
	return out, nil
}

// pushBytes stores b with the given media type unless it is already there.
func pushBytes(ctx context.Context, st content.Storage, mediaType string, b []byte, annotations map[string]string) (ocispec.Descriptor, error) {
	d := content.NewDescriptorFromBytes(mediaType, b)
	d.Annotations = annotations
	ok, err := st.Exists(ctx, d)
	if err != nil {
		return d, err
	}
	if ok {
		return d, nil
	}
	if err := st.Push(ctx, d, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return d, fmt.Errorf("storing blob: %w", err)
	}
	return d, nil
}
