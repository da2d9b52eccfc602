package join

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// ErrImageDenied means the join endpoint refused the credentials for an
// image route (401 or 403): no or a wrong certificate or token, or a node
// certificate where the admin one is needed.
var ErrImageDenied = errors.New("image access denied")

// The image client functions talk to the image routes of the join
// endpoint at joinURL ("https://host:port"), verifying the server against
// caPEM (the cluster CA) and presenting cert as the client certificate: the
// admin certificate to upload, a node's (see LoadNodeCredentials) or the
// admin's to read. Each call uses its own connection; ctx bounds it.

// UploadImage stores the archive r (size bytes, sha256 digest "sha256:<hex>")
// as ref. The server verifies the digest before keeping anything and
// answers at once, without reading r to the end, when it already holds the
// digest; HasImage checks first without opening the archive.
func UploadImage(ctx context.Context, joinURL string, caPEM []byte, admin tls.Certificate, ref, digest string, size int64, r io.Reader) error {
	hc, err := imageClient(caPEM, admin)
	if err != nil {
		return err
	}
	u := joinURL + imagesPath + "/" + url.PathEscape(digest) + "?ref=" + url.QueryEscape(ref)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, io.NopCloser(r))
	if err != nil {
		return fmt.Errorf("uploading %s: %w", ref, err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-tar")
	// The server answers before reading the body when it already holds the
	// digest or refuses the caller; 100-continue saves sending it then.
	req.Header.Set("Expect", "100-continue")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("uploading %s to %s: %w", ref, joinURL, err)
	}
	defer resp.Body.Close()
	if err := statusErr(resp); err != nil {
		return fmt.Errorf("uploading %s to %s: %w", ref, joinURL, err)
	}
	return nil
}

// HasImage reports whether the join endpoint holds the archive digest.
func HasImage(ctx context.Context, joinURL string, caPEM []byte, cert tls.Certificate, digest string) (bool, error) {
	resp, err := imageGet(ctx, http.MethodHead, joinURL+imagesPath+"/"+url.PathEscape(digest), caPEM, cert)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return false, nil
	}
	if err := statusErr(resp); err != nil {
		return false, fmt.Errorf("checking image %s at %s: %w", digest, joinURL, err)
	}
	return true, nil
}

// ListImages returns the archives the join endpoint holds, sorted by ref.
func ListImages(ctx context.Context, joinURL string, caPEM []byte, cert tls.Certificate) ([]Image, error) {
	resp, err := imageGet(ctx, http.MethodGet, joinURL+imagesPath, caPEM, cert)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := statusErr(resp); err != nil {
		return nil, fmt.Errorf("listing images at %s: %w", joinURL, err)
	}
	var out []Image
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("listing images at %s: decoding: %w", joinURL, err)
	}
	return out, nil
}

// FetchImage streams the archive digest. The reader checks the bytes
// against digest: reading past the end returns an error wrapping
// ErrDigestMismatch instead of io.EOF if they differ, so a caller that
// reads to io.EOF got exactly the uploaded archive. A missing archive is
// an error wrapping ErrNoImage.
func FetchImage(ctx context.Context, joinURL string, caPEM []byte, cert tls.Certificate, digest string) (io.ReadCloser, error) {
	want, ok := digestHex(digest)
	if !ok {
		return nil, fmt.Errorf("digest %q: want sha256:<64 lowercase hex characters>", digest)
	}
	resp, err := imageGet(ctx, http.MethodGet, joinURL+imagesPath+"/"+url.PathEscape(digest), caPEM, cert)
	if err != nil {
		return nil, err
	}
	if err := statusErr(resp); err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("fetching image %s from %s: %w", digest, joinURL, err)
	}
	return &verifyingReader{rc: resp.Body, h: sha256.New(), want: want, digest: digest}, nil
}

// LoadNodeCredentials reads the CA and the node certificate and key that
// Join wrote to dataDir, for the image client functions.
func LoadNodeCredentials(dataDir string) (caPEM []byte, cert tls.Certificate, err error) {
	caPEM, err = os.ReadFile(filepath.Join(dataDir, CAFile))
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("reading node credentials: %w", err)
	}
	cert, err = tls.LoadX509KeyPair(filepath.Join(dataDir, CertFile), filepath.Join(dataDir, KeyFile))
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("reading node credentials: %w", err)
	}
	return caPEM, cert, nil
}

func imageGet(ctx context.Context, method, u string, caPEM []byte, cert tls.Certificate) (*http.Response, error) {
	hc, err := imageClient(caPEM, cert)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching the join endpoint: %w", err)
	}
	return resp, nil
}

// imageClient verifies the server against caPEM and presents cert. No
// overall timeout: archives may be large; ctx bounds each call.
func imageClient(caPEM []byte, cert tls.Certificate) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the cluster CA is not a PEM certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if len(cert.Certificate) > 0 {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:       cfg,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute, // the server hashes and syncs an upload before answering
		ExpectContinueTimeout: 10 * time.Second,
		DisableKeepAlives:     true,
	}}, nil
}

// statusErr turns a non-2xx response into an error with the server's
// message.
func statusErr(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var e struct{ Error string }
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	if e.Error == "" {
		e.Error = http.StatusText(resp.StatusCode)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %s (status %d)", ErrImageDenied, e.Error, resp.StatusCode)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %s", ErrNoImage, e.Error)
	}
	return fmt.Errorf("status %d: %s", resp.StatusCode, e.Error)
}

// verifyingReader hashes what it reads and checks the digest at EOF.
type verifyingReader struct {
	rc     io.ReadCloser
	h      hash.Hash
	want   string
	digest string
	n      int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("%w: received %d bytes hashing to sha256:%s, not %s", ErrDigestMismatch, v.n, got, v.digest)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.rc.Close() }
