package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
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

// podRoutes keeps a route to every other node's pod CIDR through that
// node's address (nodes on one L2 segment, as the local provider's bridge
// is): pods on different nodes reach each other without an overlay.
type podRoutes struct {
	self string
	log  *slog.Logger
}

func (r *podRoutes) sync(n *corev1.Node) {
	if n.Name == r.self || n.Spec.PodCIDR == "" {
		return
	}
	var gw net.IP
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			gw = net.ParseIP(a.Address)
			break
		}
	}
	_, dst, err := net.ParseCIDR(n.Spec.PodCIDR)
	if gw == nil || err != nil {
		return
	}
	if err := netlink.RouteReplace(&netlink.Route{Dst: dst, Gw: gw}); err != nil {
		r.log.Warn("cannot route to a node's pods", "node", n.Name, "podCIDR", n.Spec.PodCIDR, "via", gw, "err", err)
		return
	}
	r.log.Debug("route to node pods", "node", n.Name, "podCIDR", n.Spec.PodCIDR, "via", gw)
}

func (r *podRoutes) remove(n *corev1.Node) {
	if _, dst, err := net.ParseCIDR(n.Spec.PodCIDR); err == nil && n.Name != r.self {
		_ = netlink.RouteDel(&netlink.Route{Dst: dst})
	}
}

// runPodRoutes watches Nodes and keeps the routes until ctx ends.
func runPodRoutes(ctx context.Context, cs kubernetes.Interface, self string, log *slog.Logger) {
	r := &podRoutes{self: self, log: log}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Nodes().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.sync(o.(*corev1.Node)) },
		UpdateFunc: func(_, o any) { r.sync(o.(*corev1.Node)) },
		DeleteFunc: func(o any) {
			if n, ok := o.(*corev1.Node); ok {
				r.remove(n)
			}
		},
	})
	f.Start(ctx.Done())
}
