// Package registrytest starts go-containerregistry's in-process OCI registry
// on loopback for tests. It models the distribution API (push, pull, tags,
// referrers) but not authentication or TLS.
package registrytest

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// New starts a registry for the duration of t and returns its host:port
// (127.0.0.1:NNNNN), which k2 and oras reach over plain HTTP.
func New(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
