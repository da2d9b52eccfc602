// Package freeport finds TCP ports on the loopback interface that nothing
// listens on.
package freeport

import "net"

// Get returns a loopback TCP port that is free now; another process may
// take it before the caller listens on it.
func Get() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
