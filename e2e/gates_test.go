package e2e

import (
	utilfeature "k8s.io/apiserver/pkg/util/feature"

	// Registers the Kubernetes feature gates with their 1.37 defaults, as
	// upstream's binaries have them.
	_ "k8s.io/kubernetes/pkg/features"
)

// upstreamGates are the default values of every feature gate of the
// Kubernetes code k2 embeds, at its own version (the test binary sets none).
func upstreamGates() map[string]bool {
	out := map[string]bool{}
	for name := range utilfeature.DefaultMutableFeatureGate.GetAll() {
		out[string(name)] = utilfeature.DefaultFeatureGate.Enabled(name)
	}
	return out
}
