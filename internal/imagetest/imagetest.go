// Package imagetest makes container images for tests without network
// access: a static Go HTTP server built from httpserver/ and wrapped in a
// one-layer image, and a push to a test registry.
package imagetest

import (
	"bytes"
	"context"
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
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	out := filepath.Join(t.TempDir(), "httpserver")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, HTTPServerPkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", HTTPServerPkg, err, b)
	}
	exe, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ociarchive.BinaryImage("httpserver", exe, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Push pushes img to ref (host:port/repo:tag; plain HTTP, as for the
// registries tests start on 127.0.0.1) and returns the digest-pinned
// reference host:port/repo@sha256:….
func Push(t testing.TB, img v1.Image, ref string) string {
	t.Helper()
	r, err := registry.ParseReference(ref)
	if err != nil {
		t.Fatalf("parsing %s: %v", ref, err)
	}
	repo, err := remote.NewRepository(r.Registry + "/" + r.Repository)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	ctx := context.Background()
	push := func(mt string, d v1.Hash, size int64, open func() (io.ReadCloser, error)) {
		desc := ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(d.String()), Size: size}
		if ok, err := repo.Exists(ctx, desc); err == nil && ok {
			return
		}
		rc, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if err := repo.Push(ctx, desc, rc); err != nil {
			t.Fatalf("pushing %s blob %s: %v", ref, d, err)
		}
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		d, _ := l.Digest()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		push(string(mt), d, size, l.Compressed)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := img.ConfigName()
	m, _ := img.Manifest()
	push(string(m.Config.MediaType), cd, int64(len(cfg)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(cfg)), nil
	})
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	d, _ := img.Digest()
	desc := ocispec.Descriptor{MediaType: string(mt), Digest: digest.Digest(d.String()), Size: int64(len(raw))}
	if err := repo.PushReference(ctx, desc, bytes.NewReader(raw), ref); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return r.Registry + "/" + r.Repository + "@" + d.String()
}
