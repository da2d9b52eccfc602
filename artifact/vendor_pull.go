package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"

	"k2.dev/k2/internal/iocount"
	"k2.dev/k2/internal/ociarchive"
)

// ImageArchiveMediaType is a vendored container image: an OCI
// image-layout tar (oci-layout, index.json, blobs/sha256/…) holding one
// image for linux/<arch>, named in index.json by the io.containerd.image.name
// and org.opencontainers.image.ref.name annotations — what containerd's
// import reads.
const ImageArchiveMediaType = "application/vnd.k2.image.layer.v1.tar"

// KindImage is the dev.k2.layer.kind annotation of a vendored image layer.
// Image layers are listed in Config.Images, not Config.Layers: they are
// imported by nodes, not applied to the cluster.
const KindImage = "image"

// AnnotationImageRef is the normalised image reference of an image layer.
const AnnotationImageRef = "dev.k2.image.ref"

// archiveDesc is the manifest descriptor of a vendored image's layer; it
// depends only on the ImageRef, so inherited images keep their bytes.
func archiveDesc(im ImageRef) ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType: im.Archive.MediaType,
		Digest:    digest.Digest(im.Archive.Digest),
		Size:      im.Archive.Size,
		Annotations: map[string]string{
			AnnotationTitle:     archiveFileName(im.Ref),
			AnnotationLayerKind: KindImage,
			AnnotationImageRef:  im.Ref,
		},
	}
}

// archiveFileName is a file name for an image's archive ("docker.io_library_nginx_1.27.tar").
func archiveFileName(ref string) string {
	return strings.NewReplacer("/", "_", ":", "_", "@", "_").Replace(ref) + ".tar"
}

// apiRef returns the reference to reach a normalised image ref's registry
// with: docker.io is served by registry-1.docker.io.
func apiRef(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	host := reference.Domain(n)
	if host == "docker.io" {
		host = "registry-1.docker.io"
	}
	s := host + "/" + reference.Path(n)
	if c, ok := n.(reference.Canonical); ok {
		return s + "@" + c.Digest().String(), nil
	}
	if t, ok := n.(reference.Tagged); ok {
		return s + ":" + t.Tag(), nil
	}
	return s + ":latest", nil
}

// vendorImage pulls im for linux/runtime.GOARCH and stores it as an
// archive layer; a check build only resolves it.
func (b *builder) vendorImage(ctx context.Context, im *ImageRef) error {
	start := time.Now()
	ar, err := apiRef(im.Ref)
	if err != nil {
		return err
	}
	repo, tag, err := b.opts.Remote.repository(ar)
	if err != nil {
		return err
	}
	platform := &ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	desc, err := oras.Resolve(ctx, repo, tag, oras.ResolveOptions{TargetPlatform: platform})
	if err != nil {
		return registryErr("pulling", im.Ref, err)
	}
	im.Digest = desc.Digest.String()
	im.Platform = "linux/" + runtime.GOARCH
	if b.opts.Check {
		b.log.Info("image resolved", "ref", im.Ref, "digest", im.Digest)
		return nil
	}
	b.log.Info("vendoring image", "ref", im.Ref, "digest", im.Digest)
	img, err := fetchImage(ctx, repo, desc)
	if err != nil {
		return registryErr("pulling", im.Ref, err)
	}
	f, err := os.CreateTemp("", "k2-image-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	cw := &iocount.Writer{W: io.MultiWriter(f, h)}
	if err := ociarchive.Write(cw, []ociarchive.Named{{Ref: im.Ref, Image: img}}); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return registryErr("pulling", im.Ref, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	im.Archive = &ImageArchiveSpec{MediaType: ImageArchiveMediaType,
		Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: cw.N}
	if err := pushIfMissing(ctx, b.blobs, archiveDesc(*im), f); err != nil {
		return fmt.Errorf("storing image archive: %w", err)
	}
	b.log.Info("image vendored", "ref", im.Ref, "digest", im.Digest, "size", cw.N,
		"elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

// fetchImage reads an image manifest and config through an oras fetcher
// and returns it as a go-containerregistry image whose layers are fetched
// when read.
func fetchImage(ctx context.Context, f content.Fetcher, desc ocispec.Descriptor) (v1.Image, error) {
	raw, err := content.FetchAll(ctx, f, desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	cfg, err := content.FetchAll(ctx, f, m.Config)
	if err != nil {
		return nil, fmt.Errorf("reading image config: %w", err)
	}
	core := &fetchedImage{ctx: ctx, f: f, mediaType: desc.MediaType, raw: raw, m: m, config: cfg}
	return partial.CompressedToImage(core)
}

// fetchedImage is a partial.CompressedImageCore over an oras fetcher.
type fetchedImage struct {
	ctx       context.Context // the build's; the image lives only during one vendorImage call
	f         content.Fetcher
	mediaType string
	raw       []byte
	m         ocispec.Manifest
	config    []byte
}

func (i *fetchedImage) RawConfigFile() ([]byte, error) { return i.config, nil }
func (i *fetchedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(i.mediaType), nil
}
func (i *fetchedImage) RawManifest() ([]byte, error) { return i.raw, nil }

func (i *fetchedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.m.Layers {
		if l.Digest.String() == h.String() {
			return &fetchedLayer{img: i, d: l}, nil
		}
	}
	if i.m.Config.Digest.String() == h.String() {
		return &fetchedLayer{img: i, d: i.m.Config}, nil
	}
	return nil, fmt.Errorf("image has no blob %s", h)
}

// fetchedLayer is one layer of a fetchedImage.
type fetchedLayer struct {
	img *fetchedImage
	d   ocispec.Descriptor
}

func (l *fetchedLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.d.Digest.String()) }
func (l *fetchedLayer) Size() (int64, error)     { return l.d.Size, nil }
func (l *fetchedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.d.MediaType), nil
}
func (l *fetchedLayer) Compressed() (io.ReadCloser, error) {
	return l.img.f.Fetch(l.img.ctx, l.d)
}
