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
// at path (e.g. /run/netns/NAME, /proc/PID/ns/net). The thread is never
// switched back: it stays locked to f's goroutine and ends with it, so no
// other goroutine ever runs in the wrong namespace.
func Do(path string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread exits with this goroutine
		ns, err := os.Open(path)
		if err != nil {
			ch <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		ch <- f()
	}()
	return <-ch
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
