// Package netns makes sockets inside a network namespace from a process
// that itself stays in its own: a socket belongs to the namespace it was
// made in, whichever thread later reads or writes it.
package netns

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread of its own switched into the network namespace
// at path (e.g. /run/netns/NAME, /proc/PID/ns/net), then switches the
// thread back. No other goroutine runs on the thread meanwhile. Should the
// switch back fail, the thread stays locked to f's goroutine and ends with
// it; the process's main thread, which Go never ends, would stay wedged
// in its namespace, so the switch back is not left to the thread's end:
// tools such as `ip netns pids` judge a process by its main thread's
// namespace.
func Do(path string, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- inNamespace(path, f) }()
	return <-ch
}

// inNamespace is Do's goroutine: it locks its thread, switches it into
// the namespace for f and back, and unlocks it unless it could not switch
// back (the goroutine then ends, and the thread with it).
func inNamespace(path string, f func() error) error {
	runtime.LockOSThread()
	stuck := false
	defer func() {
		if !stuck {
			runtime.UnlockOSThread()
		}
	}()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	ns, err := os.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("entering network namespace %s: %w", path, err)
	}
	err = f()
	stuck = unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) != nil
	return err
}

// Listen listens on address (TCP) inside the namespace at path.
func Listen(path, address string) (net.Listener, error) {
	var ln net.Listener
	err := Do(path, func() (err error) {
		ln, err = net.Listen("tcp", address)
		return err
	})
	return ln, err
}

// Dial connects to address (TCP) from inside the namespace at path.
func Dial(path, address string) (net.Conn, error) {
	var c net.Conn
	err := Do(path, func() (err error) {
		c, err = net.Dial("tcp", address)
		return err
	})
	return c, err
}
