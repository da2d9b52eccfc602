package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAPI is a TLS server for 127.0.0.1 that answers /readyz (200 while
// ready) and /who with its name; it stands for a k2 server, whose real
// failover the HA e2e tests exercise.
type fakeAPI struct {
	name  string
	srv   *httptest.Server
	ready atomic.Bool
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(der)
	return ca, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}},
		ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func startFakeAPI(t *testing.T, name string, cert tls.Certificate) *fakeAPI {
	f := &fakeAPI{name: name}
	f.ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !f.ready.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	f.srv = httptest.NewUnstartedServer(mux)
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

// TestBalancerFailover: connections go to the first server; when it stops
// accepting they go to another at once; when the one in use fails /readyz
// the balancer leaves it and closes the connections to it; a server list
// without the current server moves on too.
func TestBalancerFailover(t *testing.T) {
	ca, caKey, caPEM := testCA(t)
	serving := leaf(t, ca, caKey, x509.ExtKeyUsageServerAuth)
	a, b, c := startFakeAPI(t, "a", serving), startFakeAPI(t, "b", serving), startFakeAPI(t, "c", serving)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lb, err := startBalancer(ctx, []string{a.srv.URL, b.srv.URL}, caPEM, leaf(t, ca, caKey, x509.ExtKeyUsageClientAuth), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	who := func() (string, error) {
		resp, err := hc.Get(lb.URL() + "/who")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := who(); err != nil || got != "a" {
		t.Fatalf("first request went to %q (%v), want a", got, err)
	}

	// a stops answers /readyz: after two checks the balancer leaves it
	// and closes the kept-alive connection, so the next request is on b.
	a.ready.Store(false)
	waitUntil(t, 3*healthInterval+time.Second, "traffic moves to b when a is not ready", func() error {
		if got, err := who(); err != nil || got != "b" {
			return fmt.Errorf("went to %q (%w)", got, err)
		}
		return nil
	})
	a.ready.Store(true)

	// b goes away entirely: a new connection dials a at once.
	b.srv.Close()
	tr.CloseIdleConnections()
	if got, err := who(); err != nil || got != "a" {
		t.Fatalf("after b closed, request went to %q (%v), want a", got, err)
	}

	// The cluster's list changes to one without a: c takes over.
	lb.SetServers([]string{c.srv.URL})
	tr.CloseIdleConnections()
	if got, err := who(); err != nil || got != "c" {
		t.Fatalf("after the server list changed, request went to %q (%v), want c", got, err)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
