// Package integration holds the tests that need a real Kubernetes control
// plane: k2's embedded one (provision/controlplane), started once in
// TestMain for the whole package, with the App controller running beside
// it as in k2 server. The test binary links all of Kubernetes, so every
// server-backed test of the App resource and of provision/apply lives
// here, and nowhere else.
//
// There are no kubelets: pods are created but never run. Tests that need
// ready replicas mark the pods Ready through the status subresource, as a
// kubelet would, and let the real ReplicaSet and Deployment controllers
// roll that up.
package integration
