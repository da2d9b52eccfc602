package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of the embedded etcd's PKI. The etcd CA is separate from the
// cluster CA: the join endpoint signs node certificates with the cluster
// CA, and a node must never be able to talk to etcd.
const (
	EtcdCACert     = "etcd-ca.crt"
	EtcdCAKey      = "etcd-ca.key"
	EtcdServerCert = "etcd-server.crt" // the client port (127.0.0.1)
	EtcdServerKey  = "etcd-server.key"
	EtcdPeerCert   = "etcd-peer.crt" // the peer port, server and client auth
	EtcdPeerKey    = "etcd-peer.key"
	EtcdClientCert = "etcd-client.crt" // the apiserver's and k2's own etcd client
	EtcdClientKey  = "etcd-client.key"
)

// EtcdFiles are the paths the embedded etcd and its clients use.
type EtcdFiles struct {
	CA, ServerCert, ServerKey, PeerCert, PeerKey, ClientCert, ClientKey string
}

// EtcdPaths returns the etcd file paths inside dir, without creating them.
func EtcdPaths(dir string) EtcdFiles {
	p := func(n string) string { return filepath.Join(dir, n) }
	return EtcdFiles{
		CA: p(EtcdCACert), ServerCert: p(EtcdServerCert), ServerKey: p(EtcdServerKey),
		PeerCert: p(EtcdPeerCert), PeerKey: p(EtcdPeerKey), ClientCert: p(EtcdClientCert), ClientKey: p(EtcdClientKey),
	}
}

// EnsureEtcd creates what is missing of the etcd PKI in dir: the etcd CA
// (kept if present: every member of a cluster must share it), the client
// certificate, the client-port serving certificate (loopback) and this
// member's peer certificate for peerAddrs (re-issued when they change).
func EnsureEtcd(dir string, peerAddrs []string) (EtcdFiles, error) {
	f := EtcdPaths(dir)
	ca, caKey, err := ensureCA(dir, EtcdCACert, EtcdCAKey, "k2-etcd-ca")
	if err != nil {
		return f, fmt.Errorf("etcd CA: %w", err)
	}
	loopDNS, loopIPs := []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	peerDNS, peerIPs := slices.Clone(loopDNS), slices.Clone(loopIPs)
	for _, a := range peerAddrs {
		if ip := net.ParseIP(a); ip != nil {
			if !slices.ContainsFunc(peerIPs, ip.Equal) {
				peerIPs = append(peerIPs, ip)
			}
		} else if a != "" && !slices.Contains(peerDNS, a) {
			peerDNS = append(peerDNS, a)
		}
	}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, c := range []struct {
		cert, key, cn string
		dns           []string
		ips           []net.IP
		usage         []x509.ExtKeyUsage
	}{
		{EtcdServerCert, EtcdServerKey, "k2-etcd-server", loopDNS, loopIPs, both},
		{EtcdPeerCert, EtcdPeerKey, "k2-etcd-peer", peerDNS, peerIPs, both},
	} {
		if err := ensureLeaf(dir, c.cert, c.key, ca, caKey, c.cn, c.dns, c.ips, c.usage); err != nil {
			return f, fmt.Errorf("etcd certificate %s: %w", c.cn, err)
		}
	}
	if !exists(f.ClientCert) || !exists(f.ClientKey) {
		if err := issueClient(dir, EtcdClientCert, EtcdClientKey, "kube-apiserver-etcd-client", nil, ca, caKey); err != nil {
			return f, fmt.Errorf("etcd client certificate: %w", err)
		}
	}
	return f, nil
}

// ensureLeaf issues a certificate for names unless a valid one covering
// them exists.
func ensureLeaf(dir, certName, keyName string, ca *x509.Certificate, caKey crypto.Signer, cn string, dns []string, ips []net.IP, usage []x509.ExtKeyUsage) error {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	if cert, err := readCert(certPath); err == nil && exists(keyPath) && covers(cert, dns, ips) &&
		time.Until(cert.NotAfter) > 30*24*time.Hour && cert.CheckSignatureFrom(ca) == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := sign(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: usage,
	}, &key.PublicKey, leafValidity)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// SetEtcdCA installs the etcd CA of the cluster a member joins (the join
// endpoint hands it over), replacing one of its own: the member's
// certificates are issued again from it by EnsureEtcd.
func SetEtcdCA(dir string, certPEM, keyPEM []byte) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("the cluster's etcd CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, EtcdCAKey), keyPEM, 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, EtcdCACert), certPEM, 0o644)
}

// EtcdCA returns the PEM of the etcd CA in dir, certificate and key.
func EtcdCA(dir string) (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(filepath.Join(dir, EtcdCACert)); err != nil {
		return nil, nil, err
	}
	keyPEM, err = os.ReadFile(filepath.Join(dir, EtcdCAKey))
	return certPEM, keyPEM, err
}
