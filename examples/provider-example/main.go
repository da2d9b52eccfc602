// Command k2-provider-example is a complete external k2 provider plugin, the
// one docs/plugins.md walks through. Its "cloud" is a directory: each
// machine is a JSON file, so it needs no VMs, yet it keeps state across
// plugin processes like a real cloud does, which is what makes Create's
// idempotency by request id meaningful.
//
// Build it as k2-provider-example and put it on $K2_PLUGIN_PATH:
//
//	go build -o ~/.k2/plugins/k2-provider-example ./examples/provider-example
//	k2 plugin ls
package main

import "k2.dev/k2/providers/sdk"

func main() {
	sdk.Serve(func() sdk.Provider { return &provider{} })
}
