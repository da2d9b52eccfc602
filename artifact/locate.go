package artifact

import (
	"context"
	"io"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// Target is where an artifact lives, for reading or attaching to it (a
// signature, say): the registry repository a reference names, or the local
// store for a reference without a registry host.
type Target struct {
	oras.GraphTarget
	// Ref is the normalised reference; Reference its tag or digest part
	// (for a registry), or Ref itself (for the local store).
	Ref, Reference string
	// Local is true for the local store.
	Local bool
	store *Store
}

// Locate returns where ref lives: the registry it names (reached with o),
// or the local store s for a reference without a registry host.
func Locate(s *Store, ref string, o RemoteOptions) (*Target, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	if !hasRegistry(ref) {
		return &Target{GraphTarget: liveStore{s}, Ref: ref, Reference: ref, Local: true, store: s}, nil
	}
	repo, tag, err := o.repository(ref)
	if err != nil {
		return nil, err
	}
	return &Target{GraphTarget: repo, Ref: ref, Reference: tag}, nil
}

// ResolveRef returns the manifest descriptor of the target's reference.
func (t *Target) ResolveRef(ctx context.Context) (ocispec.Descriptor, error) {
	if t.Local {
		return t.store.Resolve(ctx, t.Ref)
	}
	d, err := t.GraphTarget.Resolve(ctx, t.Reference)
	if err != nil {
		return d, registryErr("resolving", t.Ref, err)
	}
	return d, nil
}

// Write runs fn while holding the local store's write lock (for the
// local store; a registry needs none), so that adding to the store never
// races another k2 process.
func (t *Target) Write(ctx context.Context, fn func() error) error {
	if !t.Local {
		if err := fn(); err != nil {
			return registryErr("writing to", t.Ref, err)
		}
		return nil
	}
	unlock, err := t.store.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

// RegistryError marks err, from reaching ref's registry, as a registry
// error (exit code 5) with a hint; errors already marked pass unchanged.
func RegistryError(op, ref string, err error) error { return registryErr(op, ref, err) }

// Copy copies the artifact srcRef names, with everything referring to it
// (signatures included), to dstRef: registry to registry, the local store
// to a registry, or a registry to the local store. The source is read by
// digest, so a tag that moves meanwhile does not matter; dstRef may be
// digest-pinned. It returns the manifest's descriptor.
func Copy(ctx context.Context, s *Store, srcRef, dstRef string, o RemoteOptions) (ocispec.Descriptor, error) {
	src, err := Locate(s, srcRef, o)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	dst, err := Locate(s, dstRef, o)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := src.ResolveRef(ctx)
	if err != nil {
		return d, err
	}
	err = dst.Write(ctx, func() error {
		var err error
		d, err = copyWithReferrers(ctx, src, d.Digest.String(), dst, dst.Reference, "copying", o.logger())
		return err
	})
	return d, err
}

// liveStore is the store's current OCI layout: taking the write lock
// reloads it (see lock), so a Target must not keep the one it started with.
type liveStore struct{ s *Store }

var _ oras.GraphTarget = liveStore{}

func (l liveStore) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return l.s.oci.Fetch(ctx, d)
}

func (l liveStore) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	return l.s.oci.Exists(ctx, d)
}

func (l liveStore) Push(ctx context.Context, d ocispec.Descriptor, r io.Reader) error {
	return l.s.oci.Push(ctx, d, r)
}

func (l liveStore) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	return l.s.oci.Resolve(ctx, ref)
}

func (l liveStore) Tag(ctx context.Context, d ocispec.Descriptor, ref string) error {
	return l.s.oci.Tag(ctx, d, ref)
}

func (l liveStore) Predecessors(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return l.s.oci.Predecessors(ctx, d)
}

// SplitRegistry splits ref into the registry host it names and the rest
// (repository path with tag or digest); host is "" for a reference to the
// local store only ("hello:v1").
func SplitRegistry(ref string) (host, rest string) {
	if !hasRegistry(ref) {
		return "", ref
	}
	i := strings.Index(ref, "/")
	return ref[:i], ref[i+1:]
}
