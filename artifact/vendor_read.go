package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// VendoredImages returns the images stored in the artifact (k2 build
// --vendor-images), sorted by Ref. Their Ref is the name to import them
// under; [Artifact.ImageArchive] streams each one.
func (a *Artifact) VendoredImages() []ImageRef {
	var out []ImageRef
	for _, im := range a.Config.Images {
		if im.Archive != nil {
			out = append(out, im)
		}
	}
	return out
}

// ImageArchive streams the OCI image-layout tar of the vendored image ref
// (as written in a workload, or normalised), ready for containerd's
// import. The content is verified against its digest: a mismatch is an
// error from Read at the end of the stream.
func (a *Artifact) ImageArchive(ctx context.Context, ref string) (io.ReadCloser, error) {
	norm, err := NormalizeImageRef(ref)
	if err != nil {
		return nil, err
	}
	for _, im := range a.Config.Images {
		if im.Ref != norm {
			continue
		}
		if im.Archive == nil {
			return nil, fmt.Errorf("%s: image %s is referenced but not vendored; rebuild with k2 build --vendor-images", a.Ref, norm)
		}
		d := archiveDesc(im)
		rc, err := a.fetcher.Fetch(ctx, d)
		if err != nil {
			return nil, fmt.Errorf("reading image %s: %w", norm, err)
		}
		return &verifiedReader{rc: rc, vr: content.NewVerifyReader(rc, d)}, nil
	}
	return nil, fmt.Errorf("%s has no image %s", a.Ref, norm)
}

// verifiedReader checks the digest when the stream ends.
type verifiedReader struct {
	rc io.ReadCloser
	vr *content.VerifyReader
}

func (r *verifiedReader) Read(p []byte) (int, error) {
	n, err := r.vr.Read(p)
	if errors.Is(err, io.EOF) {
		if verr := r.vr.Verify(); verr != nil {
			return n, verr
		}
	}
	return n, err
}

func (r *verifiedReader) Close() error { return r.rc.Close() }

// vendoredLayers counts the manifest layers holding vendored images; they
// follow the applied layers in the manifest.
func vendoredLayers(c *Config) int {
	n := 0
	for _, im := range c.Images {
		if im.Archive != nil {
			n++
		}
	}
	return n
}

// checkLayerCount checks that a manifest has one layer per applied layer
// plus one per vendored image.
func checkLayerCount(ref string, c *Config, m *ocispec.Manifest) error {
	if want := len(c.Layers) + vendoredLayers(c); want != len(m.Layers) {
		return fmt.Errorf("%s: config lists %d layers and %d vendored images, manifest %d layers",
			ref, len(c.Layers), vendoredLayers(c), len(m.Layers))
	}
	return nil
}
