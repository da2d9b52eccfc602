package osimage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/atomicfile"
)

// An image as an OCI artifact: artifactType ArtifactType, the manifest
// (k2os.json) as its config, one layer per file titled with its name.
const (
	ArtifactType        = "application/vnd.k2.os.v1"
	ConfigMediaType     = "application/vnd.k2.os.config.v1+json"
	KernelMediaType     = "application/vnd.k2.os.kernel.v1"
	InitramfsMediaType  = "application/vnd.k2.os.initramfs.v1"
	InitramfsZstdMedia  = "application/vnd.k2.os.initramfs.v1+zstd"
	DiskMediaType       = "application/vnd.k2.os.disk.v1.raw"
	annotationK2Version = "dev.k2.os.k2-version"
)

// ReadManifest reads an image directory's k2os.json.
func ReadManifest(dir string) (*Manifest, []byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, nil, fmt.Errorf("%s holds no k2 OS image (build one with 'k2 os build -o %s'): %w", dir, dir, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	return &m, b, nil
}

// layers are the image's files as OCI descriptors.
func (m *Manifest) layers() []ocispec.Descriptor {
	initrdType := InitramfsMediaType
	if m.Initramfs.Compression == "zstd" {
		initrdType = InitramfsZstdMedia
	}
	files := []struct {
		f  FileInfo
		mt string
	}{{m.Kernel, KernelMediaType}, {m.Initramfs, initrdType}}
	if m.Disk != nil {
		files = append(files, struct {
			f  FileInfo
			mt string
		}{*m.Disk, DiskMediaType})
	}
	var out []ocispec.Descriptor
	for _, f := range files {
		out = append(out, ocispec.Descriptor{MediaType: f.mt, Digest: digest.NewDigestFromEncoded(digest.SHA256, f.f.SHA256), Size: f.f.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: f.f.File}})
	}
	return out
}

// Push stores the image in dir at the target (a registry repository, or
// the local store) and tags it; it returns the manifest's descriptor.
// Each file is checked against the digest k2os.json records first.
func Push(ctx context.Context, dir string, t *artifact.Target) (ocispec.Descriptor, error) {
	m, cfg, err := ReadManifest(dir)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layers := m.layers()
	for _, l := range layers {
		if err := checkFile(filepath.Join(dir, l.Annotations[ocispec.AnnotationTitle]), l); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	cd := content.NewDescriptorFromBytes(ConfigMediaType, cfg)
	man := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       cd,
		Layers:       layers,
		Annotations:  map[string]string{annotationK2Version: m.K2Version},
	}
	mb, err := json.Marshal(man)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, mb)
	md.ArtifactType = ArtifactType
	err = t.Write(ctx, func() error {
		for _, l := range layers {
			if err := pushFile(ctx, t, l, filepath.Join(dir, l.Annotations[ocispec.AnnotationTitle])); err != nil {
				return err
			}
		}
		if err := pushBytes(ctx, t, cd, cfg); err != nil {
			return err
		}
		if err := pushBytes(ctx, t, md, mb); err != nil {
			return err
		}
		return t.Tag(ctx, md, t.Reference)
	})
	return md, err
}

// Pull writes the image the target's reference names into dir, checking
// every file against its digest.
func Pull(ctx context.Context, t *artifact.Target, dir string) (*Manifest, error) {
	md, err := t.ResolveRef(ctx)
	if err != nil {
		return nil, err
	}
	mb, err := content.FetchAll(ctx, t, md)
	if err != nil {
		return nil, artifact.RegistryError("fetching", t.Ref, err)
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(mb, &man); err != nil {
		return nil, err
	}
	if man.ArtifactType != ArtifactType || man.Config.MediaType != ConfigMediaType {
		return nil, fmt.Errorf("%s is not a k2 OS image (artifactType %q); push one with 'k2 os push DIR REF'", t.Ref, man.ArtifactType)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, l := range man.Layers {
		name := l.Annotations[ocispec.AnnotationTitle]
		if name == "" || name != filepath.Base(name) || name == ManifestFile {
			return nil, fmt.Errorf("%s: layer %s has no usable file name (%q)", t.Ref, l.Digest, name)
		}
		if err := fetchFile(ctx, t, l, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	cfg, err := content.FetchAll(ctx, t, man.Config)
	if err != nil {
		return nil, artifact.RegistryError("fetching", t.Ref, err)
	}
	var m Manifest
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("%s: its k2os.json: %w", t.Ref, err)
	}
	return &m, atomicfile.Write(filepath.Join(dir, ManifestFile), cfg, 0o644)
}

func checkFile(path string, d ocispec.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	vr := content.NewVerifyReader(f, d)
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return fmt.Errorf("%s does not match k2os.json: %w", path, err)
	}
	if err := vr.Verify(); err != nil {
		return fmt.Errorf("%s does not match k2os.json (rebuild the image): %w", path, err)
	}
	return nil
}

type pusher interface {
	Exists(ctx context.Context, d ocispec.Descriptor) (bool, error)
	Push(ctx context.Context, d ocispec.Descriptor, r io.Reader) error
}

func pushFile(ctx context.Context, t pusher, d ocispec.Descriptor, path string) error {
	if ok, err := t.Exists(ctx, d); err != nil || ok {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.Push(ctx, d, f)
}

func pushBytes(ctx context.Context, t pusher, d ocispec.Descriptor, b []byte) error {
	if ok, err := t.Exists(ctx, d); err != nil || ok {
		return err
	}
	return t.Push(ctx, d, bytes.NewReader(b))
}

func fetchFile(ctx context.Context, t *artifact.Target, d ocispec.Descriptor, dst string) error {
	if checkFile(dst, d) == nil {
		return nil // already there
	}
	rc, err := t.Fetch(ctx, d)
	if err != nil {
		return artifact.RegistryError("fetching", t.Ref, err)
	}
	defer rc.Close()
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	vr := content.NewVerifyReader(rc, d)
	if _, err := io.Copy(f, vr); err != nil {
		f.Close()
		return artifact.RegistryError("fetching", t.Ref, err)
	}
	if err := vr.Verify(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
