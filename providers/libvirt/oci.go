package libvirt

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// openImageOCI reads the manifest of a k2 OS image in a registry (`k2 os
// push DIR REF`): an OCI manifest whose layers are the image's files,
// each titled (org.opencontainers.image.title) by its name in the image
// directory, k2os.json among them (or as the manifest's config). The
// kernel and the initramfs are streamed from the registry into the pool
// when a volume needs them; their layer digests name the volumes.
func openImageOCI(ctx context.Context, ref string) (*bootImage, error) {
	repo, reference, err := repository(ref)
	if err != nil {
		return nil, userErrorf("config.image", "%q is neither an image directory nor an OCI reference: %v", ref, err)
	}
	desc, rc, err := repo.FetchReference(ctx, reference)
	if err != nil {
		return nil, userErrorf("config.image", "fetching the k2 OS image %s: %v", ref, err)
	}
	b, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of %s: %w", ref, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(b, &man); err != nil || len(man.Layers) == 0 {
		return nil, userErrorf("config.image", "%s is not a k2 OS image (an OCI manifest with layers; 'k2 os push' makes one): %v", ref, err)
	}
	byTitle := map[string]ocispec.Descriptor{}
	for _, l := range man.Layers {
		if t := l.Annotations[ocispec.AnnotationTitle]; t != "" {
			byTitle[t] = l
		}
	}
	mdesc, ok := byTitle[imageManifest]
	if !ok {
		mdesc = man.Config
	}
	mb, err := content.FetchAll(ctx, repo, mdesc)
	if err != nil {
		return nil, fmt.Errorf("fetching %s of %s: %w", imageManifest, ref, err)
	}
	var m manifest
	if err := json.Unmarshal(mb, &m); err != nil || m.Kernel.File == "" || m.Initramfs.File == "" {
		return nil, userErrorf("config.image", "%s has no %s naming its kernel and initramfs: push it with 'k2 os push'", ref, imageManifest)
	}
	img := &bootImage{Ref: ref, Arch: m.Arch, Cmdline: m.Cmdline}
	for _, f := range []struct {
		dst  *imageFile
		name string
		role string
	}{{&img.Kernel, m.Kernel.File, "vmlinuz"}, {&img.Initramfs, m.Initramfs.File, "initramfs"}} {
		l, ok := byTitle[f.name]
		if !ok {
			return nil, userErrorf("config.image", "%s has no layer titled %s (its %s)", ref, f.name, f.role)
		}
		if l.Digest.Algorithm() != "sha256" {
			return nil, userErrorf("config.image", "%s: layer %s has a %s digest; k2 reads sha256", ref, f.name, l.Digest.Algorithm())
		}
		*f.dst = imageFile{Role: f.role, Size: l.Size, SHA256: l.Digest.Encoded(),
			open: func(ctx context.Context) (io.ReadCloser, error) { return repo.Fetch(ctx, l) }}
	}
	return img, nil
}

// repository connects to the repository of ref, with the credentials of
// docker's config (as docker, skopeo and k2 push use them); registries on
// loopback speak plain HTTP.
func repository(ref string) (*remote.Repository, string, error) {
	repo, err := remote.NewRepository(ref)
	if err != nil {
		return nil, "", err
	}
	reference := repo.Reference.Reference
	if reference == "" {
		return nil, "", fmt.Errorf("%s names no tag or digest", ref)
	}
	host := repo.Reference.Registry
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		repo.PlainHTTP = true
	}
	client := &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache()}
	if cs, err := credentials.NewStoreFromDocker(credentials.StoreOptions{}); err == nil {
		client.Credential = credentials.Credential(cs)
	}
	repo.Client = client
	if !strings.Contains(ref, "/") {
		return nil, "", fmt.Errorf("%s names no registry", ref)
	}
	return repo, reference, nil
}
