package libvirttest

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a TCP listener inside the daemon's network namespace (e.g.
// "127.0.0.1:0" on its loopback, or an address of one of its bridges), for
// a server the test runs in its own process that programs in the namespace
// (k2 deploy, VMs) must reach: a socket belongs to the namespace it was
// made in, whichever thread later serves it. The calling thread enters the
// namespace only for the listen call.
func (d *Daemon) Listen(address string) (net.Listener, error) {
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + d.Netns)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("entering network namespace %s: %w", d.Netns, err)
	}
	ln, lerr := net.Listen("tcp", address)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so it ends with this goroutine rather
		// than run others in the wrong namespace.
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("leaving network namespace %s: %w", d.Netns, err)
	}
	runtime.UnlockOSThread()
	if lerr != nil {
		return nil, fmt.Errorf("listening on %s in %s: %w", address, d.Netns, lerr)
	}
	return ln, nil
}
