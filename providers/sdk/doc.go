// Package sdk is what a k2 provider plugin imports. A provider hands out
// machines (VMs, bare metal, processes) that join a k2 cluster; k2 runs it
// out of process through hashicorp/go-plugin over gRPC, so a crashing
// provider cannot take k2 down.
//
// A plugin's main is one call:
//
//	func main() { sdk.Serve(func() sdk.Provider { return &myProvider{} }) }
//
// The Provider interface has one method per call, each
// Method(ctx, *Request) (*Response, error). Embed UnimplementedProvider so
// that calls added to the protocol later never break a plugin. There is no
// protocol version beyond go-plugin's handshake: k2 and the plugin exchange
// Capabilities (in DescribeRequest.Host and DescribeResponse.Capabilities)
// and each side uses only what the other advertises.
//
// Errors: return a Go error only when the plugin itself failed (a bug, an
// unreachable API). Anything the user can fix — a bad config value, an
// architecture the provider does not offer — is a Diagnostic with a Path,
// returned in the response.
//
// Contract for Create and Delete: both are idempotent by RequestID. A
// Create retried with the same RequestID (after a timeout, a crash of the
// plugin or of k2) returns the machines already made for it and makes only
// the ones missing; it never makes two machines for one MachineRequest.
// Delete of a machine that is already gone succeeds.
//
// providers/providertest checks all of this for any provider.
package sdk
