package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"oras.land/oras-go/v2/content"
)

// Artifact is a k2 cluster artifact opened for reading: its manifest, its
// config and access to each layer's content. Open one with [Open] (local
// store) or [OpenRemote] (a registry, without storing it).
type Artifact struct {
	// Ref is the reference it was opened by.
	Ref string
	// Descriptor is the manifest's descriptor; Descriptor.Digest is the
	// artifact's identity.
	Descriptor ocispec.Descriptor
	Manifest   ocispec.Manifest
	Config     *Config
	fetcher    content.Fetcher
}

// Open opens ref from the local store. If it is not there and pull is true,
// it is pulled first from its registry with remote.
func Open(ctx context.Context, s *Store, ref string, pull bool, remote RemoteOptions) (*Artifact, error) {
	d, err := s.Resolve(ctx, ref)
	if err != nil && pull && hasRegistry(ref) {
		d, err = Pull(ctx, s, ref, remote)
	}
	if err != nil {
		return nil, err
	}
	return openDesc(ctx, s.oci, ref, d)
}

// openDesc opens the artifact whose manifest is d.
func openDesc(ctx context.Context, f content.Fetcher, ref string, d ocispec.Descriptor) (*Artifact, error) {
	m, err := fetchManifest(ctx, f, d)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("%s is not a k2 cluster artifact (artifactType %q)", ref, m.ArtifactType)
	}
	cfg, err := fetchConfig(ctx, f, m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	if err := checkLayerCount(ref, cfg, m); err != nil {
		return nil, err
	}
	return &Artifact{Ref: ref, Descriptor: d, Manifest: *m, Config: cfg, fetcher: f}, nil
}

// layerDesc returns the descriptor and spec of the layer named name.
func (a *Artifact) layerDesc(name string) (ocispec.Descriptor, *LayerSpec, error) {
	for i, l := range a.Config.Layers {
		if l.Name == name {
			return a.Manifest.Layers[i], &a.Config.Layers[i], nil
		}
	}
	return ocispec.Descriptor{}, nil, fmt.Errorf("%s has no layer %q", a.Ref, name)
}

// LayerBlob returns the raw content of the layer named name, verified
// against its digest.
func (a *Artifact) LayerBlob(ctx context.Context, name string) ([]byte, error) {
	d, _, err := a.layerDesc(name)
	if err != nil {
		return nil, err
	}
	b, err := content.FetchAll(ctx, a.fetcher, d)
	if err != nil {
		return nil, fmt.Errorf("reading layer %s: %w", name, err)
	}
	return b, nil
}

// Files returns the files of a manifests layer, or the single App object
// (as "app.yaml") of an app layer, in archive order (sorted by name).
func (a *Artifact) Files(ctx context.Context, name string) ([]File, error) {
	_, spec, err := a.layerDesc(name)
	if err != nil {
		return nil, err
	}
	b, err := a.LayerBlob(ctx, name)
	if err != nil {
		return nil, err
	}
	switch spec.Kind {
	case KindManifests:
		return untarGz(b)
	case KindApp:
		return []File{{Name: "app.yaml", Data: b}}, nil
	}
	return nil, fmt.Errorf("layer %s is a %s layer; use Chart", name, spec.Kind)
}

// Chart returns the chart of a chart layer, loaded with Helm's loader, and
// how to install it (release, namespace, values, set).
func (a *Artifact) Chart(ctx context.Context, name string) (*chart.Chart, *ChartSpec, error) {
	_, spec, err := a.layerDesc(name)
	if err != nil {
		return nil, nil, err
	}
	if spec.Kind != KindChart {
		return nil, nil, fmt.Errorf("layer %s is a %s layer, not a chart", name, spec.Kind)
	}
	b, err := a.LayerBlob(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	ch, err := loader.LoadArchive(bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("loading chart of layer %s: %w", name, err)
	}
	return ch, spec.Chart, nil
}

// fetchJSON reads the blob d and decodes it into v.
func fetchJSON(ctx context.Context, f content.Fetcher, d ocispec.Descriptor, v any) error {
	b, err := content.FetchAll(ctx, f, d)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
