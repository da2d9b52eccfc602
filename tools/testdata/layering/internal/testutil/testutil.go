// Package testutil stands for k2.dev/k2/internal/testutil.
package testutil

// Version is a placeholder.
const Version = 1
