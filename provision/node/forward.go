package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// HostNetNS is the network namespace loopback registries are forwarded to:
// that of PID 1, the host's.
const HostNetNS = "/proc/1/ns/net"

// InOtherNetNS reports whether this process runs in a network namespace
// other than nsPath's (a machine of the local provider).
func InOtherNetNS(nsPath string) bool {
	var a, b unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &a) != nil || unix.Stat(nsPath, &b) != nil {
		return false
	}
	return a.Ino != b.Ino || a.Dev != b.Dev
}

// ForwardLoopback makes loopback addresses of the host usable inside this
// network namespace: for each addr (127.0.0.1:5000) it listens on the same
// address here and relays every connection to it in the namespace at
// hostNS. It is how a node's containerd pulls from a registry that listens
// on the host's 127.0.0.1. It returns once the listeners are up; they close
// when ctx ends.
func ForwardLoopback(ctx context.Context, addrs []string, hostNS string, log *slog.Logger) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("forwarding %s: %w", a, err)
		}
		go func() { <-ctx.Done(); ln.Close() }()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go relay(c, hostNS, a, log)
			}
		}()
		log.Info("forwarding a host loopback address into the node", "addr", a)
	}
	return nil
}

func relay(c net.Conn, hostNS, addr string, log *slog.Logger) {
	defer c.Close()
	up, err := dialIn(hostNS, addr)
	if err != nil {
		log.Warn("forwarding: cannot reach the host's address", "addr", addr, "err", err)
		return
	}
	defer up.Close()
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	go cp(up, c)
	go cp(c, up)
	wg.Wait()
}

// dialIn connects to addr from inside the network namespace at nsPath: the
// socket is made on a thread switched into that namespace, and keeps it.
func dialIn(nsPath, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering %s: %w", nsPath, err)
	}
	c, derr := net.Dial("tcp", addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: it ends with this goroutine rather than
		// running other goroutines in the wrong namespace.
		if c != nil {
			c.Close()
		}
		return nil, errors.Join(derr, err)
	}
	runtime.UnlockOSThread()
	return c, derr
}
