// Package testutil holds what k2's tests share: a goroutine-safe buffer,
// free loopback ports, the check that a stopped server or agent left no
// goroutine of k2's running, and the Kubernetes fixture in testdata/.
// Only _test.go files and test helper packages import it (depguard in
// .golangci.yml keeps it out of the product).
package testutil
