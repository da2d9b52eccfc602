package node

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"

	"k2.dev/k2/internal/noderoute"
)

// ensureDNSAddress puts DNSAddress on the loopback interface (a dummy
// interface would need a kernel module these machines may lack): a local
// address, so pods reach the node's DNS through their default route.
func ensureDNSAddress() error {
	l, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	addr, _ := netlink.ParseAddr(DNSAddress + "/32")
	if err := netlink.AddrReplace(l, addr); err != nil {
		return fmt.Errorf("adding %s to lo: %w", DNSAddress, err)
	}
	return nil
}

// removeDNSAddress takes DNSAddress off the loopback interface.
func removeDNSAddress() {
	if l, err := netlink.LinkByName("lo"); err == nil {
		addr, _ := netlink.ParseAddr(DNSAddress + "/32")
		_ = netlink.AddrDel(l, addr)
	}
}

// podRoutes is the component that keeps a route to every other node's pod
// CIDR through that node's address (nodes on one L2 segment, as the local
// provider's bridge is; internal/noderoute): pods on different nodes reach
// each other without an overlay. It watches Nodes while it runs.
type podRoutes struct {
	n    *node
	self string
	log  *slog.Logger
}

func (*podRoutes) Name() string                { return "pod-routes" }
func (*podRoutes) Init(context.Context) error  { return nil }
func (*podRoutes) Start(context.Context) error { return nil }
func (*podRoutes) Stop(context.Context) error  { return nil }

func (r *podRoutes) Run(ctx context.Context) error {
	return noderoute.Run(ctx, r.n.cs, noderoute.Options{Self: r.self, Log: r.log})
}
