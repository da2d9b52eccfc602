// Package imagetest makes container images for tests without network
// access: a static Go HTTP server built from httpserver/ and wrapped in a
// one-layer image, and a push to a test registry.
package imagetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"k2.dev/k2/internal/ociarchive"
)

// HTTPServerPkg is the import path of the test HTTP server.
const HTTPServerPkg = "k2.dev/k2/internal/imagetest/httpserver"

// HTTPServerImage builds the test HTTP server (k2.dev/k2/internal/imagetest/httpserver:
// $PORT, default 8080; GET / answers "hello from <hostname>"; each request
// logged to stdout; exits on SIGTERM) as a static linux/runtime.GOARCH
// executable and returns a one-layer image running it as /httpserver. It
// needs the go command and the k2 module sources (go test runs inside
// them); the build cache makes repeated calls cheap.
func HTTPServerImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := BuildHTTPServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BuildHTTPServer is HTTPServerImage outside tests: it builds the server
// into dir and wraps it in an image.
func BuildHTTPServer(dir string) (v1.Image, error) {
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out := filepath.Join(dir, "httpserver")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, HTTPServerPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", HTTPServerPkg, err, b)
	}
	exe, err := os.ReadFile(out)
	if err != nil {
		return nil, err
	}
	return ociarchive.BinaryImage("httpserver", exe, runtime.GOARCH)
}

// Push pushes img to ref (host:port/repo:tag; plain HTTP, as for the
// registries tests start on 127.0.0.1) and returns the digest-pinned
// reference host:port/repo@sha256:….
func Push(t testing.TB, img v1.Image, ref string) string {
	t.Helper()
	pinned, err := PushImage(context.Background(), img, ref)
	if err != nil {
		t.Fatal(err)
	}
	return pinned
}

// PushImage is Push outside tests.
func PushImage(ctx context.Context, img v1.Image, ref string) (string, error) {
	r, err := registry.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("parsing %s: %w", ref, err)
	}
	repo, err := remote.NewRepository(r.Registry + "/" + r.Repository)
	if err != nil {
		return "", err
	}
	repo.PlainHTTP = true
	push := func(mt string, d v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
		desc := ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(d.String()), Size: size}
		if ok, err := repo.Exists(ctx, desc); err == nil && ok {
			return nil
		}
		rc, err := open()
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := repo.Push(ctx, desc, rc); err != nil {
			return fmt.Errorf("pushing %s blob %s: %w", ref, d, err)
		}
		return nil
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		d, _ := l.Digest()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		if err := push(string(mt), d, size, l.Compressed); err != nil {
			return "", err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return "", err
	}
	cd, _ := img.ConfigName()
	m, _ := img.Manifest()
	if err := push(string(m.Config.MediaType), cd, int64(len(cfg)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(cfg)), nil
	}); err != nil {
		return "", err
	}
	raw, err := img.RawManifest()
	if err != nil {
		return "", err
	}
	mt, _ := img.MediaType()
	d, _ := img.Digest()
	desc := ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: int64(len(raw))}
	if err := repo.PushReference(ctx, desc, bytes.NewReader(raw), ref); err != nil {
		return "", fmt.Errorf("pushing %s: %w", ref, err)
	}
	return r.Registry + "/" + r.Repository + "@" + d.String(), nil
}
