package libvirttest

import (
	"crypto/x509"
	"net"
	"os"
	"path/filepath"

	"k2.dev/k2/internal/testutil"
)

// TLSAddr is where the daemon listens for qemu+tls:// clients, inside its
// network namespace, with a certificate for 127.0.0.1 from a CA made for
// it; PKIDir holds that CA and a client certificate libvirtd accepts.
const TLSAddr = "127.0.0.1:16514"

// WritePKI makes, in dir, a CA, libvirtd's certificate (for 127.0.0.1)
// and a client's, in the files libvirt's clients look for (cacert.pem,
// clientcert.pem, clientkey.pem; servercert.pem and serverkey.pem for the
// daemon). libvirt checks the usages: the CA may sign, the server's is
// for serverAuth, the client's for clientAuth. Each call makes a new CA:
// a second directory is a PKI the daemon does not trust.
func WritePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := testutil.NewCA("k2 libvirttest CA")
	if err != nil {
		return err
	}
	files := map[string][]byte{"cacert.pem": ca.CertPEM}
	for _, leaf := range []struct {
		name  string
		ips   []net.IP
		usage x509.ExtKeyUsage
	}{{"server", []net.IP{net.IPv4(127, 0, 0, 1)}, x509.ExtKeyUsageServerAuth}, {"client", nil, x509.ExtKeyUsageClientAuth}} {
		cert, key, err := ca.Issue("k2 libvirttest "+leaf.name, leaf.ips, leaf.usage)
		if err != nil {
			return err
		}
		files[leaf.name+"cert.pem"], files[leaf.name+"key.pem"] = cert, key
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
