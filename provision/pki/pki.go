// Package pki creates and loads the certificates and keys of a k2 control
// plane: a cluster CA, the apiserver's serving certificate, a service-account
// key pair, a separate front-proxy CA, and client certificates for the admin,
// the controller-manager, the scheduler and the apiserver's kubelet client.
//
// Everything is generated once into a directory (keys 0600) and reused on
// restart; only the serving certificate is re-issued when its SANs change.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"k2.dev/k2/internal/atomicfile"
)

// File names inside the PKI directory.
const (
	CACert             = "ca.crt"
	CAKey              = "ca.key"
	ServingCert        = "apiserver.crt"
	ServingKey         = "apiserver.key"
	SAKey              = "sa.key"
	SAPub              = "sa.pub"
	FrontProxyCACert   = "front-proxy-ca.crt"
	FrontProxyCAKey    = "front-proxy-ca.key"
	FrontProxyCert     = "front-proxy-client.crt"
	FrontProxyKey      = "front-proxy-client.key"
	AdminCert          = "admin.crt"
	AdminKey           = "admin.key"
	ControllerCert     = "controller-manager.crt"
	ControllerKey      = "controller-manager.key"
	SchedulerCert      = "scheduler.crt"
	SchedulerKey       = "scheduler.key"
	KubeletClientCert  = "apiserver-kubelet-client.crt"
	KubeletClientKey   = "apiserver-kubelet-client.key"
	caValidity         = 10 * 365 * 24 * time.Hour
	leafValidity       = 365 * 24 * time.Hour
	FrontProxyUserName = "front-proxy-client"
)

// Options say what the serving certificate must cover.
type Options struct {
	// SANs are extra DNS names or IP addresses for the serving certificate
	// (--tls-san); host addresses and the in-cluster names are always added.
	SANs []string
	// ServiceIP is the first address of the service range (kubernetes.default).
	ServiceIP net.IP
}

// PKI is a loaded set of certificates; paths are absolute.
type PKI struct {
	Dir    string
	CA     *x509.Certificate
	CAKey  crypto.Signer
	CAData []byte // PEM
}

// Path returns the absolute path of a file in the PKI directory.
func (p *PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// CAHash returns the hex SHA-256 of the CA certificate PEM, which join tokens pin.
func (p *PKI) CAHash() string {
	sum := sha256.Sum256(p.CAData)
	return hex.EncodeToString(sum[:])
}

// Ensure loads the PKI in dir, creating whatever is missing.
func Ensure(dir string, opts Options) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := ensureCA(dir, CACert, CAKey, "k2-cluster-ca")
	if err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	fpCA, fpKey, err := ensureCA(dir, FrontProxyCACert, FrontProxyCAKey, "k2-front-proxy-ca")
	if err != nil {
		return nil, fmt.Errorf("front-proxy CA: %w", err)
	}
	dns, ips := servingNames(opts)
	if err := ensureServing(dir, ca, caKey, dns, ips); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	clients := []struct {
		cert, key, cn string
		orgs          []string
		ca            *x509.Certificate
		caKey         crypto.Signer
	}{
		{AdminCert, AdminKey, "k2-admin", []string{"system:masters"}, ca, caKey},
		{ControllerCert, ControllerKey, "system:kube-controller-manager", nil, ca, caKey},
		{SchedulerCert, SchedulerKey, "system:kube-scheduler", nil, ca, caKey},
		{KubeletClientCert, KubeletClientKey, "kube-apiserver-kubelet-client", []string{"system:masters"}, ca, caKey},
		{FrontProxyCert, FrontProxyKey, FrontProxyUserName, nil, fpCA, fpKey},
	}
	for _, c := range clients {
		if exists(filepath.Join(dir, c.cert)) && exists(filepath.Join(dir, c.key)) {
			continue
		}
		if err := issueClient(dir, c.cert, c.key, c.cn, c.orgs, c.ca, c.caKey); err != nil {
			return nil, fmt.Errorf("client certificate %s: %w", c.cn, err)
		}
	}
	if !exists(filepath.Join(dir, SAKey)) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := writeKey(filepath.Join(dir, SAKey), key); err != nil {
			return nil, err
		}
		pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
		if err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(dir, SAPub), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
			return nil, err
		}
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACert))
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	return &PKI{Dir: abs, CA: ca, CAKey: caKey, CAData: caPEM}, nil
}

func servingNames(opts Options) ([]string, []net.IP) {
	dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if opts.ServiceIP != nil {
		ips = append(ips, opts.ServiceIP)
	}
	if h, err := os.Hostname(); err == nil {
		dns = append(dns, h)
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
				ips = append(ips, n.IP)
			}
		}
	}
	for _, s := range opts.SANs {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s != "" {
			dns = append(dns, s)
		}
	}
	sort.Strings(dns)
	dns = slices.Compact(dns)
	var uniq []net.IP
	for _, ip := range ips {
		if !slices.ContainsFunc(uniq, ip.Equal) {
			uniq = append(uniq, ip)
		}
	}
	return dns, uniq
}

func ensureServing(dir string, ca *x509.Certificate, caKey crypto.Signer, dns []string, ips []net.IP) error {
	certPath, keyPath := filepath.Join(dir, ServingCert), filepath.Join(dir, ServingKey)
	if cert, err := readCert(certPath); err == nil && exists(keyPath) && covers(cert, dns, ips) && time.Until(cert.NotAfter) > 30*24*time.Hour {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := sign(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &key.PublicKey, leafValidity)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func covers(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if !slices.Contains(cert.DNSNames, d) {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func ensureCA(dir, certName, keyName, cn string) (*x509.Certificate, crypto.Signer, error) {
	certPath, keyPath := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	// The key is written before the certificate, so a certificate means a
	// complete pair; a key alone is what a crash between the two left, and
	// nothing can have been signed with it yet.
	if exists(certPath) {
		cert, err := readCert(certPath)
		if err != nil {
			return nil, nil, err
		}
		key, err := readKey(keyPath)
		if err != nil {
			return nil, nil, err
		}
		return cert, key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func issueClient(dir, certName, keyName, cn string, orgs []string, ca *x509.Certificate, caKey crypto.Signer) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := sign(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: orgs},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &key.PublicKey, leafValidity)
	if err != nil {
		return err
	}
	if err := writeKey(filepath.Join(dir, keyName), key); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func sign(ca *x509.Certificate, caKey crypto.Signer, tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration) ([]byte, error) {
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(validity)
	return x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: not a PEM certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: not a PEM key", path)
	}
	switch blk.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s: unsupported key type", path)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%s: unsupported PEM block %q", path, blk.Type)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	b, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: b}), 0o600)
}

// writeFile writes atomically: a crash never leaves a half-written key.
func writeFile(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
