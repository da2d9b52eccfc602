package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"k2.dev/k2/internal/usererr"
)

// from resolves FROM and seeds the config with the base's settings and layers.
func (b *builder) from(ctx context.Context) error {
	fr := b.f.From
	if fr.Ref == "" || fr.Scratch() {
		return nil
	}
	desc, ref, err := b.resolveBase(ctx, fr.Ref)
	if err != nil {
		return b.posErr(fr.Pos, "FROM", err)
	}
	m, err := fetchManifest(ctx, b.opts.Store.oci, desc)
	if err != nil {
		return b.posErr(fr.Pos, "FROM", err)
	}
	if m.ArtifactType != ArtifactType {
		return b.posErr(fr.Pos, "FROM", fmt.Errorf("%s is not a k2 cluster artifact (artifactType %q)", ref, m.ArtifactType))
	}
	base, err := fetchConfig(ctx, b.opts.Store.oci, m)
	if err != nil {
		return b.posErr(fr.Pos, "FROM", fmt.Errorf("%s: %w", ref, err))
	}
	if err := checkLayerCount(ref, base, m); err != nil {
		return b.posErr(fr.Pos, "FROM", err)
	}
	b.cfg.Kubernetes = base.Kubernetes
	b.cfg.Args = base.Args
	b.cfg.Machines = base.Machines
	b.cfg.OS = base.OS
	b.cfg.Apps = base.Apps
	b.cfg.AllowBeta = base.AllowBeta
	b.cfg.Labels = base.Labels
	b.cfg.Base = append([]BaseRef{{Ref: ref, Digest: desc.Digest.String()}}, base.Base...)
	for i, l := range base.Layers {
		if l.From == "" {
			l.From = ref
		}
		b.cfg.Layers = append(b.cfg.Layers, l)
		b.descs = append(b.descs, m.Layers[i])
	}
	for _, im := range base.Images {
		if im.From == "" {
			im.From = ref
		}
		b.baseImages = append(b.baseImages, im)
	}
	b.log.Info("base", "ref", ref, "digest", desc.Digest.String(), "layers", len(m.Layers))
	return nil
}

// resolveBase finds a FROM reference: a built-in base (generated into the
// store on first use), a reference in the store, or one pulled from its
// registry. It returns the manifest and the reference to record, pinned to
// the resolved digest.
func (b *builder) resolveBase(ctx context.Context, ref string) (ocispec.Descriptor, string, error) {
	if _, ok := builtinBases[ref]; ok {
		d, err := EnsureBuiltin(ctx, b.opts.Store, ref)
		return d, ref, err
	}
	nref, err := NormalizeRef(ref)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if b.opts.Pull && hasRegistry(nref) {
		b.log.Info("pulling base", "ref", nref)
		d, err := Pull(ctx, b.opts.Store, nref, b.opts.Remote)
		return d, nref, err
	}
	d, err := b.opts.Store.Resolve(ctx, nref)
	if err == nil {
		return d, nref, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return d, "", err
	}
	if !hasRegistry(nref) {
		return d, "", usererr.Wrap(usererr.KindInvalid, fmt.Errorf("base %s is not in the local store", nref),
			"build it first, pull it (k2 pull), or use a registry reference host/repo:tag")
	}
	b.log.Info("pulling base", "ref", nref)
	d, err = Pull(ctx, b.opts.Store, nref, b.opts.Remote)
	return d, nref, err
}

// fetchManifest reads and decodes an image manifest.
func fetchManifest(ctx context.Context, f content.Fetcher, d ocispec.Descriptor) (*ocispec.Manifest, error) {
	if d.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s is a %s, not an OCI image manifest", d.Digest, d.MediaType)
	}
	var m ocispec.Manifest
	if err := fetchJSON(ctx, f, d, &m); err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	return &m, nil
}

// fetchConfig reads the k2 config of a manifest.
func fetchConfig(ctx context.Context, f content.Fetcher, m *ocispec.Manifest) (*Config, error) {
	if m.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("config media type %q is not %s", m.Config.MediaType, ConfigMediaType)
	}
	b, err := content.FetchAll(ctx, f, m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return ParseConfig(b)
}

// overlay is a content.Storage writing to Storage and reading from it, then
// from Under. Check builds use it to leave the store untouched.
type overlay struct {
	content.Storage
	Under content.ReadOnlyStorage
}

func (o overlay) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := o.Storage.Fetch(ctx, d)
	if errors.Is(err, errdef.ErrNotFound) {
		return o.Under.Fetch(ctx, d)
	}
	return rc, err
}

func (o overlay) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	ok, err := o.Storage.Exists(ctx, d)
	if ok || err != nil {
		return ok, err
	}
	return o.Under.Exists(ctx, d)
}
