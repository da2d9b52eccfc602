// Package testutil holds what k2's tests share: a goroutine-safe buffer,
// free loopback ports, the check that a stopped server or agent left no
// goroutine of k2's running (goroutines.go), and the Kubernetes fixture in
// testdata/ (Fixture). Only _test.go files and test kits import it (the
// "test-kits" rule of .golangci.yml keeps it out of what ships).
package testutil

import (
	"bytes"
	"embed"
	"sync"
	"testing"

	"k2.dev/k2/internal/freeport"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: the output of a
// child process or of a relay goroutine that a test reads meanwhile.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort returns a loopback TCP port that is free now, failing tb if
// none can be had.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freeport.Get()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

//go:embed testdata
var fixtures embed.FS

// Fixture returns testdata/name of this package:
//
//	versionless.yaml  a ConfigMap "settings", a Deployment "api" and its
//	                  Service "api", none with an apiVersion (k2 resolves
//	                  them: v1, apps/v1, v1)
//	workload.yaml     a Deployment "web" (2 replicas), its Service and a
//	                  ConfigMap "web", with apiVersions, as kubectl takes them
//
// The images are on a loopback port where nothing listens: no pod of them
// runs, and no name lookup leaves the machine.
func Fixture(name string) string {
	b, err := fixtures.ReadFile("testdata/" + name)
	if err != nil {
		panic("testutil: no fixture " + name)
	}
	return string(b)
}
