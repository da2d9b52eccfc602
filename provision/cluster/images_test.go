package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/ociarchive"
	"k2.dev/k2/internal/registrytest"
	"k2.dev/k2/provision/pki"
)

// memImages is an in-memory imageSource.
type memImages struct {
	refs  []string
	data  map[string][]byte
	opens int
}

func newMemImages(kv ...string) *memImages {
	m := &memImages{data: map[string][]byte{}}
	for i := 0; i < len(kv); i += 2 {
		m.refs = append(m.refs, kv[i])
		m.data[kv[i]] = bytes.Repeat([]byte(kv[i+1]), 5000)
	}
	return m
}

func (m *memImages) vendored() []vendoredImage {
	var out []vendoredImage
	for _, r := range m.refs {
		sum := sha256.Sum256(m.data[r])
		out = append(out, vendoredImage{Ref: r, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(m.data[r]))})
	}
	return out
}

func (m *memImages) open(_ context.Context, ref string) (io.ReadCloser, error) {
	m.opens++
	return io.NopCloser(bytes.NewReader(m.data[ref])), nil
}

// joinServer is a real join handler with an image store and the TLS
// config `k2 server` uses, with the PKI k2 deploy creates; target has no
// URL yet. reader is a read credential (the apiserver's kubelet client
// certificate, the other system:masters one).
func joinServer(t *testing.T) (h http.Handler, cfg *tls.Config, target imageTarget, reader tls.Certificate) {
	t.Helper()
	p, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	store, err := join.OpenImageStore(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	h = join.NewHandler(join.ServerConfig{CACert: p.CA, CAKey: p.CAKey, CAPEM: p.CAData, Tokens: &join.StaticTokens{}, Images: store})
	serving, err := tls.LoadX509KeyPair(p.Path(pki.ServingCert), p.Path(pki.ServingKey))
	if err != nil {
		t.Fatal(err)
	}
	cfg = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert}
	admin, err := tls.LoadX509KeyPair(p.Path(pki.AdminCert), p.Path(pki.AdminKey))
	if err != nil {
		t.Fatal(err)
	}
	if reader, err = tls.LoadX509KeyPair(p.Path(pki.KubeletClientCert), p.Path(pki.KubeletClientKey)); err != nil {
		t.Fatal(err)
	}
	return h, cfg, imageTarget{caPEM: p.CAData, admin: admin}, reader
}

// joinEndpoint serves joinServer on a loopback port.
func joinEndpoint(t *testing.T) (imageTarget, tls.Certificate) {
	t.Helper()
	h, cfg, target, reader := joinServer(t)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	srv.StartTLS()
	t.Cleanup(srv.Close)
	target.url = srv.URL
	return target, reader
}

func TestWaitJoinEndpoint(t *testing.T) {
	h, cfg, target, _ := joinServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet
	target.url = "https://" + addr

	if err := waitJoinEndpoint(context.Background(), target, 300*time.Millisecond); err == nil || !strings.Contains(err.Error(), "waiting for the join endpoint") {
		t.Errorf("nothing listening: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		s := &http.Server{Handler: h, TLSConfig: cfg}
		t.Cleanup(func() { s.Close() })
		s.ServeTLS(l, "", "")
	}()
	start := time.Now()
	if err := waitJoinEndpoint(context.Background(), target, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("join endpoint answered after %s", time.Since(start).Round(time.Millisecond))
	// Refusals are not waited out.
	target.admin = tls.Certificate{}
	if err := waitJoinEndpoint(context.Background(), target, 10*time.Second); !errors.Is(err, join.ErrImageDenied) {
		t.Errorf("without credentials: %v, want ErrImageDenied", err)
	}
}

func TestPushImages(t *testing.T) {
	ctx := context.Background()
	target, reader := joinEndpoint(t)
	src := newMemImages("registry.test/web:v1", "web", "registry.test/db:v2", "db")
	var msgs []string
	progress := func(pct int, msg string) { msgs = append(msgs, fmt.Sprintf("%d%% %s", pct, msg)) }

	if err := pushImages(ctx, src, target, progress); err != nil {
		t.Fatal(err)
	}
	got, err := join.ListImages(ctx, target.url, target.caPEM, reader)
	if err != nil {
		t.Fatal(err)
	}
	var want []join.Image
	for _, im := range src.vendored() {
		want = append(want, join.Image{Ref: im.Ref, Digest: im.Digest, Size: im.Size})
	}
	// The server lists by ref.
	want[0], want[1] = want[1], want[0]
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server images (-want +got):\n%s", diff)
	}
	if last := msgs[len(msgs)-1]; last != "100% 2 of 2 vendored images uploaded, 0 already there (24.4Ki in all)" {
		t.Errorf("last progress line %q", last)
	}

	// A resumed deploy opens nothing the server holds.
	src.opens, msgs = 0, nil
	if err := pushImages(ctx, src, target, progress); err != nil {
		t.Fatal(err)
	}
	if src.opens != 0 {
		t.Errorf("opened %d archives the server already holds", src.opens)
	}
	wantMsgs := []string{
		"60% image registry.test/web:v1 already on the control plane",
		"100% image registry.test/db:v2 already on the control plane",
		"100% 0 of 2 vendored images uploaded, 2 already there (24.4Ki in all)",
	}
	if diff := cmp.Diff(wantMsgs, msgs); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
}

// corrupt serves bytes that do not match the digest it lists.
type corrupt struct{ *memImages }

func (c corrupt) open(ctx context.Context, ref string) (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(strings.Repeat("x", int(c.vendored()[0].Size)))), nil
}

func TestPushImagesRefused(t *testing.T) {
	ctx := context.Background()
	target, reader := joinEndpoint(t)
	src := newMemImages("registry.test/web:v1", "web")
	err := pushImages(ctx, corrupt{src}, target, func(int, string) {})
	if err == nil || !strings.Contains(err.Error(), "does not match its digest") {
		t.Errorf("corrupt archive: %v", err)
	}
	if got, err := join.ListImages(ctx, target.url, target.caPEM, reader); err != nil || len(got) != 0 {
		t.Errorf("after a refused upload the server lists %v, %v", got, err)
	}
	anon := target
	anon.admin = tls.Certificate{}
	if err := pushImages(ctx, src, anon, func(int, string) {}); !errors.Is(err, join.ErrImageDenied) {
		t.Errorf("without the admin certificate: %v, want ErrImageDenied", err)
	}
}

// TestPushArtifactImages builds an artifact with a vendored image from a
// registry on 127.0.0.1, uploads its images through the adapter the step
// uses, and reads the archive back as a node would: the layer digest the
// artifact records is the digest the server verifies and serves.
func TestPushArtifactImages(t *testing.T) {
	ctx := context.Background()
	host := registrytest.New(t)
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref := host + "/test/web:1"
	imagetest.Push(t, img, ref)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, k8sfile.DefaultName), []byte("FROM scratch\nAPP web image="+ref+" port=8080\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, err := k8sfile.ParseFile(filepath.Join(dir, k8sfile.DefaultName))
	if err != nil {
		t.Fatal(err)
	}
	s, err := artifact.OpenStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Build(ctx, f, artifact.BuildOptions{Store: s, Context: os.DirFS(dir), Ref: "vendored:v1", VendorImages: true}); err != nil {
		t.Fatal(err)
	}
	a, err := artifact.Open(ctx, s, "vendored:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}

	target, reader := joinEndpoint(t)
	if err := pushImages(ctx, artifactImages{a}, target, func(int, string) {}); err != nil {
		t.Fatal(err)
	}
	vi := a.VendoredImages()
	if len(vi) != 1 {
		t.Fatalf("%d vendored images, want 1", len(vi))
	}
	got, err := join.ListImages(ctx, target.url, target.caPEM, reader)
	if err != nil {
		t.Fatal(err)
	}
	want := []join.Image{{Ref: ref, Digest: vi[0].Archive.Digest, Size: vi[0].Archive.Size}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("server images (-want +got):\n%s", diff)
	}
	rc, err := join.FetchImage(ctx, target.url, target.caPEM, reader, vi[0].Archive.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	entries, err := ociarchive.List(rc)
	if err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := img.Digest()
	if len(entries) != 1 || entries[0].Ref != ref || entries[0].Digest != wantDigest {
		t.Errorf("served archive names %+v, want %s %s", entries, ref, wantDigest)
	}
}
