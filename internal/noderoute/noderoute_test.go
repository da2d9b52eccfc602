package noderoute

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// inNewNetns runs f on a thread of its own in a new network namespace with
// a veth whose end k2t0 holds 10.99.0.1/24 (the machine's network). The
// thread is never returned to the scheduler: it ends with the goroutine.
func inNewNetns(t *testing.T, f func()) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "k2t0"}, PeerName: "k2t1"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Errorf("adding a veth: %v", err)
			return
		}
		addr, _ := netlink.ParseAddr("10.99.0.1/24")
		for _, name := range []string{"k2t0", "k2t1"} {
			l, _ := netlink.LinkByName(name)
			if name == "k2t0" {
				_ = netlink.AddrAdd(l, addr)
			}
			_ = netlink.LinkSetUp(l)
		}
		f()
	}()
	<-done
}

func node(name, podCIDR, ip string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
}

// via is the gateway the routing table picks for addr, or "blackhole".
func via(t *testing.T, addr string) string {
	rs, err := netlink.RouteGet(net.ParseIP(addr))
	if errors.Is(err, unix.EINVAL) {
		return "blackhole"
	}
	if err != nil || len(rs) == 0 {
		return "error: " + err.Error()
	}
	if rs[0].Gw == nil {
		return "direct"
	}
	return rs[0].Gw.String()
}

// TestRoutes: blackholes drop what no node route claims; node routes go
// through the node and follow its address; removing leaves nothing of this
// package's (protocol 242) behind, and nothing else is touched.
func TestRoutes(t *testing.T) {
	inNewNetns(t, func() {
		holes := []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16"), netip.MustParsePrefix("10.43.0.0/16")}
		if err := Blackhole(holes...); err != nil {
			t.Fatalf("Blackhole: %v", err)
		}
		tb := &table{o: Options{Self: "self"}, log: slog.New(slog.DiscardHandler), routes: map[string]netlink.Route{}}
		tb.sync(node("w1", "10.42.1.0/24", "10.99.0.7"))
		tb.sync(node("w2", "10.42.2.0/24", "10.99.0.8"))
		tb.sync(node("self", "10.42.3.0/24", "10.99.0.9")) // its own pods are local
		tb.sync(node("w3", "", "10.99.0.10"))              // no pod range yet
		tb.sync(node("me", "10.42.4.0/24", "10.99.0.1"))   // at this machine's own address
		for addr, want := range map[string]string{
			"10.42.1.5":   "10.99.0.7",
			"10.42.2.5":   "10.99.0.8",
			"10.42.3.5":   "blackhole",
			"10.42.4.5":   "blackhole",
			"10.42.200.1": "blackhole",
			"10.43.0.1":   "blackhole",
			"10.99.0.7":   "direct",
		} {
			if got := via(t, addr); got != want {
				t.Errorf("route to %s: %s, want %s", addr, got, want)
			}
		}
		tb.sync(node("w1", "10.42.1.0/24", "10.99.0.17")) // the node moved
		if got := via(t, "10.42.1.5"); got != "10.99.0.17" {
			t.Errorf("after w1 moved: via %s", got)
		}
		tb.remove("w2")
		if got := via(t, "10.42.2.5"); got != "blackhole" {
			t.Errorf("after w2 left: %s", got)
		}
		tb.removeAll()
		RemoveBlackholes(holes...)
		rs, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: Proto}, netlink.RT_FILTER_PROTOCOL)
		if len(rs) != 0 {
			t.Errorf("routes left: %v", rs)
		}
		if got := via(t, "10.99.0.7"); got != "direct" {
			t.Errorf("the machine's own network: %s", got)
		}
	})
}
