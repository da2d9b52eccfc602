package libvirttest

import (
	"fmt"
	"net"

	"k2.dev/k2/internal/netns"
)

// Listen opens a TCP listener inside the daemon's network namespace (e.g.
// "127.0.0.1:0" on its loopback, or an address of one of its bridges), for
// a server the test runs in its own process that programs in the namespace
// (k2 deploy, VMs) must reach.
func (d *Daemon) Listen(address string) (net.Listener, error) {
	ln, err := netns.Listen("/run/netns/"+d.Netns, address)
	if err != nil {
		return nil, fmt.Errorf("listening on %s in %s: %w", address, d.Netns, err)
	}
	return ln, nil
}
