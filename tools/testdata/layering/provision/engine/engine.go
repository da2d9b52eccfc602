// Package engine stands for k2.dev/k2/provision/engine.
package engine

// Version is a placeholder.
const Version = 1
