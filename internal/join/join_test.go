package join_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/join"
)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T) ca {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "k2-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a TLS serving certificate for 127.0.0.1.
func (c ca) serverCert(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "k2-server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startTLS serves h over TLS with a certificate from c.
func (c ca) startTLS(t *testing.T, h http.Handler, clientAuth bool) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{c.serverCert(t)}}
	if clientAuth {
		pool := x509.NewCertPool()
		pool.AddCert(c.cert)
		s.TLS.ClientCAs, s.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

type countingVerifier struct {
	join.StaticTokens
	calls atomic.Int32
}

func (v *countingVerifier) Verify(ctx context.Context, id, secret string) (bool, error) {
	v.calls.Add(1)
	return v.StaticTokens.Verify(ctx, id, secret)
}

func TestTokenRoundTrip(t *testing.T) {
	tok, err := join.NewToken([]byte("ca"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := join.Parse(tok.String())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if !join.VerifySecret(join.HashSecret(tok.Secret), tok.Secret) || join.VerifySecret(join.HashSecret(tok.Secret), "x") {
		t.Error("VerifySecret")
	}
	hash := strings.Repeat("a", 64)
	for _, bad := range []string{
		"", "abc", "K2" + hash, "K2" + hash[:10] + "::abcdef.0123456789abcdef",
		"K2" + hash + "::abcde.0123456789abcdef", "K2" + hash + "::abcdef.0123456789ABCDEF",
		"K2" + strings.Repeat("z", 64) + "::abcdef.0123456789abcdef",
	} {
		if _, err := join.Parse(bad); !errors.Is(err, join.ErrBadToken) {
			t.Errorf("Parse(%q) = %v, want ErrBadToken", bad, err)
		}
	}
}

func TestDefaultJoinURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://10.0.0.1:6443":  "https://10.0.0.1:6444",
		"https://cp.example:443": "https://cp.example:6444",
		"https://[::1]:6443":     "https://[::1]:6444",
	} {
		got, err := join.DefaultJoinURL(in)
		if err != nil || got != want {
			t.Errorf("DefaultJoinURL(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
}

func TestJoin(t *testing.T) {
	c := newCA(t)
	tok, _ := join.NewToken(c.pem)
	tokens := &countingVerifier{}
	tokens.Add(tok)
	srv := c.startTLS(t, join.NewHandler(join.ServerConfig{CACert: c.cert, CAKey: c.key, APIServerURL: "https://127.0.0.1:6443", Tokens: tokens}), false)

	// The API server stand-in checks the node's client certificate for real.
	api := c.startTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert := r.TLS.PeerCertificates[0]
		w.Write([]byte(cert.Subject.CommonName + "/" + strings.Join(cert.Subject.Organization, ",")))
	}), true)

	dir := t.TempDir()
	opts := join.ClientOptions{ServerURL: api.URL, JoinURL: srv.URL, Token: tok.String(), NodeName: "node-1", DataDir: dir}
	creds, err := join.Join(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if creds.Reused || creds.Kubeconfig != filepath.Join(dir, "kubeconfig") {
		t.Errorf("creds = %+v", creds)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", creds.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(cfg.Host + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	resp.Body.Close()
	if got := b.String(); got != "system:node:node-1/system:nodes" {
		t.Errorf("API server saw %q", got)
	}

	// A restart with valid credentials does not join again.
	calls := tokens.calls.Load()
	creds, err = join.Join(context.Background(), opts)
	if err != nil || !creds.Reused || tokens.calls.Load() != calls {
		t.Errorf("rejoin: creds %+v, err %v, verifier calls %d → %d", creds, err, calls, tokens.calls.Load())
	}
	// Another node name in the same dir does.
	opts.NodeName = "node-2"
	if creds, err = join.Join(context.Background(), opts); err != nil || creds.Reused {
		t.Errorf("join as node-2: %+v %v", creds, err)
	}
}

func TestJoinRefused(t *testing.T) {
	c := newCA(t)
	good, _ := join.NewToken(c.pem)
	tokens := &join.StaticTokens{}
	tokens.Add(good)
	srv := c.startTLS(t, join.NewHandler(join.ServerConfig{CACert: c.cert, CAKey: c.key, Tokens: tokens}), false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wrongSecret := good
	wrongSecret.Secret = "0000000000000000"
	other := newCA(t)
	otherCA, _ := join.NewToken(other.pem)
	otherCA.ID, otherCA.Secret = good.ID, good.Secret
	for _, tc := range []struct {
		name string
		tok  join.Token
		node string
		want error
	}{
		{"WrongSecret", wrongSecret, "n1", join.ErrRefused},
		{"UnknownID", join.Token{CAHash: good.CAHash, ID: "zzzzzz", Secret: good.Secret}, "n1", join.ErrRefused},
		{"OtherCA", otherCA, "n1", join.ErrCAMismatch},
		{"BadNodeName", good, "Bad_Name", join.ErrRefused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := join.Join(ctx, join.ClientOptions{ServerURL: "https://127.0.0.1:1", JoinURL: srv.URL, Token: tc.tok.String(), NodeName: tc.node, DataDir: t.TempDir()})
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestJoinRetriesUntilServerUp(t *testing.T) {
	c := newCA(t)
	tok, _ := join.NewToken(c.pem)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens yet
	tokens := &join.StaticTokens{}
	tokens.Add(tok)
	go func() {
		time.Sleep(300 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		s := &http.Server{Handler: join.NewHandler(join.ServerConfig{CACert: c.cert, CAKey: c.key, Tokens: tokens}),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{c.serverCert(t)}}}
		t.Cleanup(func() { s.Close() })
		s.ServeTLS(l, "", "")
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = join.Join(ctx, join.ClientOptions{ServerURL: "https://" + addr, JoinURL: "https://" + addr, Token: tok.String(),
		NodeName: "late", DataDir: t.TempDir(), RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
}
