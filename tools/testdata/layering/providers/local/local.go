// Package local stands for a built-in provider: it may import the SDK.
package local

import "k2.dev/k2/providers/sdk"

// Version is allowed: providers/sdk.
const Version = sdk.Version
