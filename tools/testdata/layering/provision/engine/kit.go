package engine

// A test kit in non-test code: caught.
import "k2.dev/k2/internal/testutil"

// Kit is not allowed outside tests.
const Kit = testutil.Version
