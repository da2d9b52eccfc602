// Package noderoute keeps a machine's routes to the cluster's pods: a route
// to each node's pod range through that node's address (nodes share one L2
// segment, as the local provider's bridge or a VM network does), and
// blackhole routes for whole cluster ranges (the pod and service ranges on
// the control plane's machine), so an address of the cluster either reaches
// the node that holds it or goes nowhere — never out of the default route.
//
// Its routes carry their own routing protocol number, Proto, so that
// `ip route show proto 242` lists them and removing them never touches a
// route someone else made.
package noderoute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Proto is the routing protocol number of the routes this package makes.
const Proto = netlink.RouteProtocol(242)

// Options configure Run.
type Options struct {
	// Self is the node this machine is, whose own pod range is local
	// (its CNI bridge); "" on a machine that is no node (the server's).
	Self string
	// RemoveOnStop deletes the routes Run made when ctx ends.
	RemoveOnStop bool
	Log          *slog.Logger // nil = discard
}

// Blackhole adds a blackhole route for each prefix (traffic to an address
// no more specific route claims is dropped here).
func Blackhole(prefixes ...netip.Prefix) error {
	for _, p := range prefixes {
		if err := netlink.RouteReplace(blackhole(p)); err != nil {
			return fmt.Errorf("adding blackhole route %s: %w", p, err)
		}
	}
	return nil
}

// RemoveBlackholes deletes blackhole routes Blackhole made.
func RemoveBlackholes(prefixes ...netip.Prefix) {
	for _, p := range prefixes {
		_ = netlink.RouteDel(blackhole(p))
	}
}

func blackhole(p netip.Prefix) *netlink.Route {
	return &netlink.Route{Dst: ipNet(p), Type: unix.RTN_BLACKHOLE, Protocol: Proto}
}

func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// table is the routes Run keeps: node name → its pod range and gateway.
type table struct {
	mu     sync.Mutex
	o      Options
	log    *slog.Logger
	routes map[string]netlink.Route
}

// Run watches the Nodes through cs and keeps a route to each node's pod
// range (but Self's) through the node's InternalIP until ctx ends.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) error {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &table{o: o, log: log, routes: map[string]netlink.Route{}}
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Nodes().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.sync(obj.(*corev1.Node)) },
		UpdateFunc: func(_, obj any) { t.sync(obj.(*corev1.Node)) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				t.remove(n.Name)
			}
		},
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	if o.RemoveOnStop {
		t.removeAll()
	}
	return nil
}

// routeOf is the route a node's pod range takes: through its InternalIP.
// ok is false for a node without a pod range or address yet.
func routeOf(n *corev1.Node) (r netlink.Route, ok bool) {
	var gw net.IP
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			gw = net.ParseIP(a.Address)
			break
		}
	}
	p, err := netip.ParsePrefix(n.Spec.PodCIDR)
	if gw == nil || err != nil {
		return r, false
	}
	return netlink.Route{Dst: ipNet(p), Gw: gw, Protocol: Proto}, true
}

func (t *table) sync(n *corev1.Node) {
	if n.Name == t.o.Self {
		return
	}
	r, ok := routeOf(n)
	if !ok || isLocal(r.Gw) {
		// A node at one of this machine's own addresses is this machine:
		// its pods are on its own bridge, not behind a gateway.
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if old, had := t.routes[n.Name]; had {
		if old.Dst.String() == r.Dst.String() && old.Gw.Equal(r.Gw) {
			return
		}
		_ = netlink.RouteDel(&old)
	}
	if err := netlink.RouteReplace(&r); err != nil {
		t.log.Warn("cannot route to a node's pods", "node", n.Name, "podCIDR", r.Dst, "via", r.Gw, "err", err)
		return
	}
	t.routes[n.Name] = r
	t.log.Debug("route to node pods", "node", n.Name, "podCIDR", r.Dst, "via", r.Gw)
}

// isLocal reports whether ip is an address of this machine (its network
// namespace).
func isLocal(ip net.IP) bool {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func (t *table) remove(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.routes[name]; ok {
		_ = netlink.RouteDel(&r)
		delete(t.routes, name)
	}
}

func (t *table) removeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for name, r := range t.routes {
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			t.log.Debug("removing route", "node", name, "err", err)
		}
		delete(t.routes, name)
	}
}
