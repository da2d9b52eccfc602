package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"k2.dev/k2/internal/netns"
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

// loopbackForward is the component that makes loopback addresses of the
// host (Options.ForwardLoopback: registries on 127.0.0.1:port) usable
// inside the node's network namespace: it listens on each address here and
// relays every connection to it in the host's namespace
// (Options.HostNetNS). It is how a node's containerd pulls from a registry
// that listens on the host's 127.0.0.1. A node on the host's own network
// needs none.
type loopbackForward struct {
	n   *node
	log *slog.Logger
	lns []net.Listener
}

func (*loopbackForward) Name() string               { return "loopback-forward" }
func (*loopbackForward) Init(context.Context) error { return nil }

// StopTimeout: relays end when containerd, stopped before, closes them.
func (*loopbackForward) StopTimeout() time.Duration { return 5 * time.Second }

func (f *loopbackForward) Start(context.Context) error {
	o := f.n.o
	if len(o.ForwardLoopback) == 0 {
		return nil
	}
	if !InOtherNetNS(o.HostNetNS) {
		f.log.Info("not forwarding loopback addresses: this node shares the host's network namespace (or cannot read it)", "hostNetNS", o.HostNetNS)
		return nil
	}
	for _, a := range o.ForwardLoopback {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("forwarding %s: %w", a, err)
		}
		f.lns = append(f.lns, ln)
		f.log.Info("forwarding a host loopback address into the node", "addr", a)
	}
	return nil
}

// Run accepts on every listener until Stop closes them, and returns once
// the relays have ended.
func (f *loopbackForward) Run(context.Context) error {
	var wg sync.WaitGroup
	for _, ln := range f.lns {
		addr := ln.Addr().String()
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { relay(c, f.n.o.HostNetNS, addr, f.log) })
			}
		})
	}
	wg.Wait()
	return nil
}

func (f *loopbackForward) Stop(context.Context) error {
	for _, ln := range f.lns {
		ln.Close()
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
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { cp(up, c) })
	wg.Go(func() { cp(c, up) })
	wg.Wait()
}

// dialIn connects to addr from inside the network namespace at nsPath.
func dialIn(nsPath, addr string) (net.Conn, error) {
	return netns.Dial(nsPath, addr)
}
