package join

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Files the client keeps in its data directory.
const (
	KubeconfigFile = "kubeconfig"
	CAFile         = "ca.crt"
	CertFile       = "node.crt"
	KeyFile        = "node.key"
)

// ErrRefused means the server refused the token (unknown, expired, wrong
// secret); retrying will not help.
var ErrRefused = errors.New("join refused")

// ErrCAMismatch means the server's CA does not match the token's hash:
// the wrong server, or someone in the middle.
var ErrCAMismatch = errors.New("cluster CA does not match the join token")

// ClientOptions configure Join.
type ClientOptions struct {
	// ServerURL is the API server (k2 agent --server); it goes into the
	// kubeconfig.
	ServerURL string
	// JoinURL is the join endpoint, or several separated by commas (tried
	// in turn); default: ServerURL's host on DefaultPort.
	JoinURL  string
	Token    string
	NodeName string
	DataDir  string
	// RetryInterval between attempts while the server cannot be reached;
	// default 2s. Join retries until ctx ends.
	RetryInterval time.Duration
	Logger        *slog.Logger
}

// Credentials are the files a joined node uses.
type Credentials struct {
	Kubeconfig string
	// Reused is true when valid credentials already existed and no join
	// request was made.
	Reused bool
}

// DefaultJoinURL derives the join endpoint from the API server URL.
func DefaultJoinURL(serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("server URL %q: want https://host:port", serverURL)
	}
	return "https://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(DefaultPort)), nil
}

// Join makes sure DataDir holds a kubeconfig with a node client certificate
// for NodeName, joining the cluster with Token unless valid credentials
// already exist there.
func Join(ctx context.Context, o ClientOptions) (*Credentials, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 2 * time.Second
	}
	kc := filepath.Join(o.DataDir, KubeconfigFile)
	if err := validCredentials(o); err == nil {
		o.Logger.Debug("reusing node credentials", "kubeconfig", kc)
		return &Credentials{Kubeconfig: kc, Reused: true}, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		o.Logger.Info("node credentials unusable; joining again", "reason", err)
	}
	tok, err := Parse(o.Token)
	if err != nil {
		return nil, err
	}
	if o.JoinURL == "" {
		if o.JoinURL, err = DefaultJoinURL(o.ServerURL); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir: %w", err)
	}
	// Several servers: each attempt asks the next one.
	urls := strings.Split(o.JoinURL, ",")
	for i := 0; ; i++ {
		one := o
		one.JoinURL = urls[i%len(urls)]
		err := joinOnce(ctx, one, tok)
		if err == nil {
			return &Credentials{Kubeconfig: kc}, nil
		}
		if errors.Is(err, ErrRefused) || errors.Is(err, ErrCAMismatch) || errors.Is(err, ErrBadToken) {
			return nil, err
		}
		o.Logger.Info("join endpoint not reachable yet; retrying", "url", one.JoinURL, "err", err)
		if (i+1)%len(urls) != 0 {
			continue // the next server at once
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("joining %s: %w (last error: %w)", o.JoinURL, ctx.Err(), err)
		case <-time.After(o.RetryInterval):
		}
	}
}

func joinOnce(ctx context.Context, o ClientOptions, tok Token) error {
	// 1. Fetch the CA without verification and pin it by the token's hash.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // checked against the token's hash below
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, o.JoinURL+"/v1/ca", nil)
	resp, err := insecure.Do(req)
	if err != nil {
		return fmt.Errorf("fetching the cluster CA: %w", err)
	}
	caPEM, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching the cluster CA: status %d %w", resp.StatusCode, err)
	}
	if got := CAHash(caPEM); got != tok.CAHash {
		return fmt.Errorf("%w: the server at %s presents CA %s…, the token expects %s…", ErrCAMismatch, o.JoinURL, got[:12], tok.CAHash[:12])
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("%w: the CA is not a PEM certificate", ErrCAMismatch)
	}

	// 2. Join over TLS verified against that CA.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "system:node:" + o.NodeName, Organization: []string{"system:nodes"}},
	}, key)
	if err != nil {
		return fmt.Errorf("creating csr: %w", err)
	}
	body, _ := json.Marshal(Request{NodeName: o.NodeName, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))})
	verified := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, o.JoinURL+"/v1/join", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok.Credential())
	req.Header.Set("Content-Type", "application/json")
	resp, err = verified.Do(req)
	if err != nil {
		return fmt.Errorf("joining: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusBadRequest {
			return fmt.Errorf("%w by %s: %s", ErrRefused, o.JoinURL, e.Error)
		}
		return fmt.Errorf("joining: status %d: %s", resp.StatusCode, e.Error)
	}
	var jr Response
	if err := json.Unmarshal(b, &jr); err != nil {
		return fmt.Errorf("decoding join response: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	server := o.ServerURL
	if server == "" {
		server = jr.Server
	}
	return writeCredentials(o.DataDir, server, o.NodeName, caPEM, []byte(jr.ClientCert), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
}

func writeCredentials(dir, server, node string, caPEM, certPEM, keyPEM []byte) error {
	for name, data := range map[string][]byte{CAFile: caPEM, CertFile: certPEM, KeyFile: keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["k2"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: filepath.Join(dir, CAFile)}
	cfg.AuthInfos["system:node:"+node] = &clientcmdapi.AuthInfo{ClientCertificate: filepath.Join(dir, CertFile), ClientKey: filepath.Join(dir, KeyFile)}
	cfg.Contexts["k2"] = &clientcmdapi.Context{Cluster: "k2", AuthInfo: "system:node:" + node}
	cfg.CurrentContext = "k2"
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(dir, KubeconfigFile)); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// validCredentials returns nil when DataDir's credentials are usable for
// NodeName: kubeconfig present, certificate for this node valid for at
// least another day and signed by a CA matching the token (when one is
// given). Missing files give an error wrapping os.ErrNotExist.
func validCredentials(o ClientOptions) error {
	if _, err := os.Stat(filepath.Join(o.DataDir, KubeconfigFile)); err != nil {
		return err
	}
	caPEM, err := os.ReadFile(filepath.Join(o.DataDir, CAFile))
	if err != nil {
		return err
	}
	if tok, err := Parse(o.Token); err == nil && CAHash(caPEM) != tok.CAHash {
		return fmt.Errorf("the stored CA is not the token's")
	}
	certPEM, err := os.ReadFile(filepath.Join(o.DataDir, CertFile))
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return fmt.Errorf("%s is not PEM", CertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	if cert.Subject.CommonName != "system:node:"+o.NodeName {
		return fmt.Errorf("the certificate is for %s", cert.Subject.CommonName)
	}
	if time.Until(cert.NotAfter) < 24*time.Hour {
		return fmt.Errorf("the certificate expires at %s", cert.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the certificate does not verify: %w", err)
	}
	return nil
}
