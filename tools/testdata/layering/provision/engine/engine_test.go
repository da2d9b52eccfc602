package engine

import (
	"testing"

	"k2.dev/k2/internal/testutil"
)

// A test kit in a test: allowed.
func TestKit(t *testing.T) {
	if testutil.Version != 1 {
		t.Fatal("version")
	}
}
