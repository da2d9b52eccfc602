// Package registrytest starts go-containerregistry's in-process OCI registry
// on loopback for tests. It models the distribution API (push, pull, tags,
// referrers) but not authentication or TLS.
package registrytest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// New starts a registry keeping blobs in memory for the duration of t and
// returns its host:port (127.0.0.1:NNNNN), which k2 and oras reach over
// plain HTTP.
func New(t testing.TB) string {
	t.Helper()
	return start(t, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
}

// NewDisk is New with blobs streamed to files under a temp dir, as a real
// registry stores them; use it for large blobs and throughput measurements.
func NewDisk(t testing.TB) string {
	t.Helper()
	return start(t, registry.New(registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(registry.NewDiskBlobHandler(t.TempDir()))))
}

func start(t testing.TB, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
