// Package sdk stands for k2.dev/k2/providers/sdk.
package sdk

// Version is a placeholder.
const Version = 1
