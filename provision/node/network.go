package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
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

// podRoutes is the component that keeps a route to every other node's pod
// CIDR through that node's address (nodes on one L2 segment, as the local
// provider's bridge is): pods on different nodes reach each other without
// an overlay. It watches Nodes from Start to Stop.
type podRoutes struct {
	n    *node
	self string
	log  *slog.Logger
	f    informers.SharedInformerFactory
	stop chan struct{}
}

func (*podRoutes) Name() string               { return "pod-routes" }
func (*podRoutes) Init(context.Context) error { return nil }

func (r *podRoutes) Start(context.Context) error {
	r.f = informers.NewSharedInformerFactory(r.n.cs, 0)
	inf := r.f.Core().V1().Nodes().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.sync(o.(*corev1.Node)) },
		UpdateFunc: func(_, o any) { r.sync(o.(*corev1.Node)) },
		DeleteFunc: func(o any) {
			if n, ok := o.(*corev1.Node); ok {
				r.remove(n)
			}
		},
	})
	r.stop = make(chan struct{})
	r.f.Start(r.stop)
	return nil
}

func (r *podRoutes) Stop(context.Context) error {
	if r.stop != nil {
		close(r.stop)
		r.f.Shutdown()
	}
	return nil
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
