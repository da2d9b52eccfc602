package join_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/pki"
)

// imageEnv is a join endpoint with an image store, served over TLS with
// certificates from provision/pki exactly as `k2 server` serves it.
type imageEnv struct {
	pki   *pki.PKI
	url   string
	dir   string // image store
	token join.Token
	admin tls.Certificate
	node  tls.Certificate // from a real join
	caPEM []byte
}

func newImageEnv(t testing.TB) *imageEnv {
	t.Helper()
	p, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &imageEnv{pki: p, dir: filepath.Join(t.TempDir(), "images"), caPEM: p.CAData}
	e.token, _ = join.NewToken(p.CAData)
	e.url = e.serve(t)
	if e.admin, err = tls.LoadX509KeyPair(p.Path(pki.AdminCert), p.Path(pki.AdminKey)); err != nil {
		t.Fatal(err)
	}
	// The node certificate comes from a real join against the same
	// endpoint, which also shows the join route works with client
	// certificates requested.
	nodeDir := t.TempDir()
	if _, err := join.Join(context.Background(), join.ClientOptions{ServerURL: "https://127.0.0.1:6443", JoinURL: e.url,
		Token: e.token.String(), NodeName: "node-1", DataDir: nodeDir}); err != nil {
		t.Fatal(err)
	}
	caPEM, node, err := join.LoadNodeCredentials(nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, p.CAData) {
		t.Fatal("LoadNodeCredentials: CA differs from the cluster's")
	}
	e.node = node
	return e
}

// serve starts a join endpoint on e.dir and returns its URL.
func (e *imageEnv) serve(t testing.TB) string {
	t.Helper()
	store, err := join.OpenImageStore(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	tokens := &join.StaticTokens{}
	tokens.Add(e.token)
	srv := httptest.NewUnstartedServer(join.NewHandler(join.ServerConfig{CACert: e.pki.CA, CAKey: e.pki.CAKey, CAPEM: e.pki.CAData,
		APIServerURL: "https://127.0.0.1:6443", Tokens: tokens, Images: store}))
	serving, err := tls.LoadX509KeyPair(e.pki.Path(pki.ServingCert), e.pki.Path(pki.ServingKey))
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}

// clientCert signs a client certificate with ca for cn and orgs.
func clientCert(t *testing.T, ca *x509.Certificate, caKey any, cn string, orgs ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// archive returns fake archive bytes and their digest; the store treats
// archives as opaque.
func archive(s string) ([]byte, string) {
	b := bytes.Repeat([]byte(s), 1000)
	sum := sha256.Sum256(b)
	return b, "sha256:" + hex.EncodeToString(sum[:])
}

// noRead fails the test if the server reads the upload body.
type noRead struct{ t *testing.T }

func (r noRead) Read([]byte) (int, error) {
	r.t.Error("the upload body was read for a digest the server holds")
	return 0, io.EOF
}

func TestImagesUploadListFetch(t *testing.T) {
	e := newImageEnv(t)
	ctx := context.Background()
	b, d := archive("hello")

	if has, err := join.HasImage(ctx, e.url, e.caPEM, e.admin, d); err != nil || has {
		t.Fatalf("HasImage before upload = %v, %v", has, err)
	}
	if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, "registry.test/hello:v1", d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	// Idempotent: the same digest again is not read.
	if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, "registry.test/hello:v1", d, int64(len(b)), noRead{t}); err != nil {
		t.Fatal(err)
	}
	if has, err := join.HasImage(ctx, e.url, e.caPEM, e.node, d); err != nil || !has {
		t.Fatalf("HasImage after upload = %v, %v", has, err)
	}
	want := []join.Image{{Ref: "registry.test/hello:v1", Digest: d, Size: int64(len(b))}}
	for name, cert := range map[string]tls.Certificate{"node": e.node, "admin": e.admin} {
		got, err := join.ListImages(ctx, e.url, e.caPEM, cert)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: ListImages (-want +got):\n%s", name, diff)
		}
		rc, err := join.FetchImage(ctx, e.url, e.caPEM, cert, d)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got2, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got2, b) {
			t.Errorf("%s: FetchImage: %d bytes, %v; want the %d uploaded", name, len(got2), err, len(b))
		}
	}
	// The same archive under a second ref is recorded without a second copy.
	if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, "registry.test/hello:latest", d, int64(len(b)), noRead{t}); err != nil {
		t.Fatal(err)
	}
	got, err := join.ListImages(ctx, e.url, e.caPEM, e.node)
	want = append([]join.Image{{Ref: "registry.test/hello:latest", Digest: d, Size: int64(len(b))}}, want...) // sorted by ref
	if diff := cmp.Diff(want, got); err != nil || diff != "" {
		t.Errorf("two refs: %v (-want +got):\n%s", err, diff)
	}
	_, missing := archive("other")
	if _, err := join.FetchImage(ctx, e.url, e.caPEM, e.node, missing); !errors.Is(err, join.ErrNoImage) {
		t.Errorf("FetchImage(missing) = %v, want ErrNoImage", err)
	}

	// A join token works too, before a node has credentials.
	for _, path := range []string{"/v1/images", "/v1/images/" + d} {
		resp := rawRequest(t, e, http.MethodGet, path, nil, "Bearer "+e.token.Credential(), nil)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s with a token: %d %s", path, resp.StatusCode, body)
		}
		if path != "/v1/images" && !bytes.Equal(body, b) {
			t.Errorf("GET %s with a token: wrong bytes", path)
		}
	}
}

// rawRequest sends a request to e with an optional client certificate and
// Authorization header, verifying the server.
func rawRequest(t *testing.T, e *imageEnv, method, path string, cert *tls.Certificate, authz string, body io.Reader) *http.Response {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.caPEM)
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	req, _ := http.NewRequest(method, e.url+path, body)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestImagesAuth(t *testing.T) {
	e := newImageEnv(t)
	b, d := archive("auth")
	if err := join.UploadImage(context.Background(), e.url, e.caPEM, e.admin, "registry.test/auth:v1", d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	b2, d2 := archive("auth2")
	foreign := newCA(t)
	otherAdmin := clientCert(t, foreign.cert, foreign.key, "k2-admin", "system:masters")
	controller := clientCert(t, e.pki.CA, e.pki.CAKey, "system:kube-controller-manager")
	unknownTok, _ := join.NewToken(e.caPEM)
	put := func() io.Reader { return bytes.NewReader(b2) }

	for _, tc := range []struct {
		name   string
		method string
		path   string
		cert   *tls.Certificate
		authz  string
		body   func() io.Reader
		want   int
	}{
		{"PutAdmin", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", &e.admin, "", put, http.StatusCreated},
		{"PutAdminAgain", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", &e.admin, "", put, http.StatusOK},
		{"PutNode", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", &e.node, "", put, http.StatusForbidden},
		{"PutToken", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", nil, "Bearer " + e.token.Credential(), put, http.StatusForbidden},
		{"PutNobody", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", nil, "", put, http.StatusUnauthorized},
		{"PutForeignAdmin", http.MethodPut, "/v1/images/" + d2 + "?ref=r:1", &otherAdmin, "", put, http.StatusUnauthorized},
		{"PutNoRef", http.MethodPut, "/v1/images/" + d2, &e.admin, "", put, http.StatusBadRequest},
		{"PutBadDigest", http.MethodPut, "/v1/images/sha256:abc?ref=r:1", &e.admin, "", put, http.StatusBadRequest},
		{"ListNobody", http.MethodGet, "/v1/images", nil, "", nil, http.StatusUnauthorized},
		{"ListController", http.MethodGet, "/v1/images", &controller, "", nil, http.StatusForbidden},
		{"ListForeign", http.MethodGet, "/v1/images", &otherAdmin, "", nil, http.StatusUnauthorized},
		{"ListUnknownToken", http.MethodGet, "/v1/images", nil, "Bearer " + unknownTok.Credential(), nil, http.StatusUnauthorized},
		{"ListMalformedToken", http.MethodGet, "/v1/images", nil, "Bearer nope", nil, http.StatusUnauthorized},
		{"ListToken", http.MethodGet, "/v1/images", nil, "Bearer " + e.token.Credential(), nil, http.StatusOK},
		{"FetchNobody", http.MethodGet, "/v1/images/" + d, nil, "", nil, http.StatusUnauthorized},
		{"HeadNode", http.MethodHead, "/v1/images/" + d, &e.node, "", nil, http.StatusOK},
		{"HeadMissing", http.MethodHead, "/v1/images/sha256:" + fmt.Sprintf("%064d", 0), &e.node, "", nil, http.StatusNotFound},
		{"CANeedsNothing", http.MethodGet, "/v1/ca", nil, "", nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = tc.body()
			}
			resp := rawRequest(t, e, tc.method, tc.path, tc.cert, tc.authz, body)
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d %s, want %d", resp.StatusCode, msg, tc.want)
			}
		})
	}

	// The client functions report refusals as ErrImageDenied.
	err := join.UploadImage(context.Background(), e.url, e.caPEM, e.node, "r:2", d2, int64(len(b2)), bytes.NewReader(b2))
	if !errors.Is(err, join.ErrImageDenied) {
		t.Errorf("UploadImage with a node certificate = %v, want ErrImageDenied", err)
	}
	if _, err := join.ListImages(context.Background(), e.url, e.caPEM, tls.Certificate{}); !errors.Is(err, join.ErrImageDenied) {
		t.Errorf("ListImages without credentials = %v, want ErrImageDenied", err)
	}
}

func TestImagesWrongDigestKeepsNothing(t *testing.T) {
	e := newImageEnv(t)
	b, _ := archive("real")
	_, other := archive("claimed")
	err := join.UploadImage(context.Background(), e.url, e.caPEM, e.admin, "r:1", other, int64(len(b)), bytes.NewReader(b))
	if err == nil {
		t.Fatal("upload under the wrong digest succeeded")
	}
	t.Log(err)
	files, _ := os.ReadDir(e.dir)
	for _, f := range files {
		if f.Name() != "index.json" {
			t.Errorf("left behind: %s", f.Name())
		}
	}
	if got, err := join.ListImages(context.Background(), e.url, e.caPEM, e.node); err != nil || len(got) != 0 {
		t.Errorf("ListImages = %v, %v; want none", got, err)
	}
}

func TestImagesConcurrentUploadOfOneDigest(t *testing.T) {
	e := newImageEnv(t)
	b, d := archive("same")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = join.UploadImage(context.Background(), e.url, e.caPEM, e.admin, "registry.test/same:v1", d, int64(len(b)), bytes.NewReader(b))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	got, err := join.ListImages(context.Background(), e.url, e.caPEM, e.node)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]join.Image{{Ref: "registry.test/same:v1", Digest: d, Size: int64(len(b))}}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	stored, err := os.ReadFile(filepath.Join(e.dir, d[len("sha256:"):]+".tar"))
	if err != nil || !bytes.Equal(stored, b) {
		t.Errorf("stored archive: %d bytes, %v", len(stored), err)
	}
	parts, _ := filepath.Glob(filepath.Join(e.dir, "*.part"))
	if len(parts) != 0 {
		t.Errorf("temporary files left: %v", parts)
	}
}

func TestImageStoreSurvivesRestart(t *testing.T) {
	e := newImageEnv(t)
	ctx := context.Background()
	b1, d1 := archive("one")
	b2, d2 := archive("two")
	for _, up := range []struct {
		ref, d string
		b      []byte
	}{{"r/a:1", d1, b1}, {"r/b:1", d2, b2}} {
		if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, up.ref, up.d, int64(len(up.b)), bytes.NewReader(up.b)); err != nil {
			t.Fatal(err)
		}
	}
	// A crash mid-upload leaves a temporary file; reopening removes it.
	if err := os.WriteFile(filepath.Join(e.dir, "deadbeef.123.part"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	url2 := e.serve(t) // a new handler and store on the same directory
	got, err := join.ListImages(ctx, url2, e.caPEM, e.node)
	if err != nil {
		t.Fatal(err)
	}
	want := []join.Image{{Ref: "r/a:1", Digest: d1, Size: int64(len(b1))}, {Ref: "r/b:1", Digest: d2, Size: int64(len(b2))}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after restart (-want +got):\n%s", diff)
	}
	if parts, _ := filepath.Glob(filepath.Join(e.dir, "*.part")); len(parts) != 0 {
		t.Errorf("temporary files left after reopening: %v", parts)
	}
	rc, err := join.FetchImage(ctx, url2, e.caPEM, e.node, d2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, b2) {
		t.Errorf("fetch after restart: %d bytes, %v", len(got), err)
	}
	rc.Close()

	// Pointing r/a:1 at a new archive removes the one nothing uses.
	b3, d3 := archive("three")
	if err := join.UploadImage(ctx, url2, e.caPEM, e.admin, "r/a:1", d3, int64(len(b3)), bytes.NewReader(b3)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, d1[len("sha256:"):]+".tar")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the replaced archive is still there: %v", err)
	}
	if has, _ := join.HasImage(ctx, url2, e.caPEM, e.node, d1); has {
		t.Error("HasImage(replaced) = true")
	}
}

func TestFetchImageDetectsCorruption(t *testing.T) {
	e := newImageEnv(t)
	ctx := context.Background()
	b, d := archive("intact")
	if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, "r:1", d, int64(len(b)), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	// Flip one byte on the server's disk.
	p := filepath.Join(e.dir, d[len("sha256:"):]+".tar")
	bad := bytes.Clone(b)
	bad[10] ^= 0xff
	if err := os.WriteFile(p, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := join.FetchImage(ctx, e.url, e.caPEM, e.node, d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, join.ErrDigestMismatch) {
		t.Errorf("reading a corrupted archive: %v, want ErrDigestMismatch", err)
	}
}

func TestImagesWithoutStore(t *testing.T) {
	c := newCA(t)
	tok, _ := join.NewToken(c.pem)
	tokens := &join.StaticTokens{}
	tokens.Add(tok)
	srv := c.startTLS(t, join.NewHandler(join.ServerConfig{CACert: c.cert, CAKey: c.key, Tokens: tokens}), false)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/images", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Credential())
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("status %d, want 404", resp.StatusCode)
	}
}

// BenchmarkImageTransfer uploads a 64 MiB archive with the admin
// certificate and fetches it with a node certificate over loopback TLS,
// reporting each direction's throughput (the server hashes and fsyncs on
// upload; the client hashes on fetch).
func BenchmarkImageTransfer(b *testing.B) {
	e := newImageEnv(b)
	ctx := context.Background()
	data := make([]byte, 64<<20)
	rand.Read(data)
	sum := sha256.Sum256(data)
	d := "sha256:" + hex.EncodeToString(sum[:])
	var up, down time.Duration
	for b.Loop() {
		// A new ref and store each round would re-upload; remove the stored
		// archive instead so every round uploads.
		os.Remove(filepath.Join(e.dir, d[7:]+".tar"))
		e.url = e.serve(b)
		start := time.Now()
		if err := join.UploadImage(ctx, e.url, e.caPEM, e.admin, "r:1", d, int64(len(data)), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		up += time.Since(start)
		start = time.Now()
		rc, err := join.FetchImage(ctx, e.url, e.caPEM, e.node, d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
		down += time.Since(start)
	}
	mb := float64(len(data)) / (1 << 20) * float64(b.N)
	b.ReportMetric(mb/up.Seconds(), "upload-MiB/s")
	b.ReportMetric(mb/down.Seconds(), "fetch-MiB/s")
}
