package osinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"

	"k2.dev/k2/internal/component"

	"k2.dev/k2/provision/machineconfig"
)

// network brings k2 OS's interfaces up: DHCP on every wired interface from
// boot (the config may be fetched over the network), then the config's
// static addresses where it names them.
type network struct {
	log   *slog.Logger
	links []string      // the wired interfaces found at Start
	add   chan string   // interfaces to run DHCP on (Run starts the loop)
	runs  chan struct{} // closed when Run started

	mu      sync.Mutex
	leases  map[string]*nclient4.Lease // interface → its DHCP lease
	dhcp    map[string]context.CancelFunc
	static  map[string]bool
	dns     []string // the config's nameservers, if any
	changed chan struct{}
}

func newNetwork(log *slog.Logger) *network {
	return &network{log: log, leases: map[string]*nclient4.Lease{}, dhcp: map[string]context.CancelFunc{},
		static: map[string]bool{}, changed: make(chan struct{}), add: make(chan string), runs: make(chan struct{})}
}

var (
	_ component.Component = (*network)(nil)
	_ component.Runner    = (*network)(nil)
)

func (n *network) Name() string               { return "network" }
func (n *network) Init(context.Context) error { return nil }
func (n *network) Stop(context.Context) error { return nil }

// wired lists the machine's physical Ethernet interfaces, by name.
func wired() ([]netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []netlink.Link
	for _, l := range links {
		a := l.Attrs()
		if l.Type() != "device" || a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
			continue
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Attrs().Name < out[j].Attrs().Name })
	return out, nil
}

// Start brings lo and every wired interface up.
func (n *network) Start(ctx context.Context) error {
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	links, err := wired()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	if len(links) == 0 {
		n.log.Error("no network interface found (is its driver in the image's module list?)")
	}
	for _, l := range links {
		if err := netlink.LinkSetUp(l); err != nil {
			n.log.Warn("bringing an interface up", "interface", l.Attrs().Name, "err", err)
			continue
		}
		n.links = append(n.links, l.Attrs().Name)
	}
	return nil
}

// Run keeps a DHCP lease on every wired interface (and on those apply
// asks for), until ctx ends.
func (n *network) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	start := func(name string) {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.dhcp[name]; ok {
			return
		}
		c, cancel := context.WithCancel(ctx)
		n.dhcp[name] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.runDHCP(c, name)
		}()
	}
	for _, l := range n.links {
		start(l)
	}
	close(n.runs)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case name := <-n.add:
			start(name)
		}
	}
}

// startDHCP asks Run for DHCP on ifname.
func (n *network) startDHCP(ctx context.Context, ifname string) {
	select {
	case <-n.runs:
	case <-ctx.Done():
		return
	}
	select {
	case n.add <- ifname:
	case <-ctx.Done():
	}
}

// runDHCP keeps a lease on ifname: request, apply, renew at half its time,
// start over when a renewal fails.
func (n *network) runDHCP(ctx context.Context, ifname string) {
	backoff := time.Second
	var lease *nclient4.Lease
	for ctx.Err() == nil {
		c, err := nclient4.New(ifname, nclient4.WithTimeout(4*time.Second), nclient4.WithRetry(2))
		if err == nil {
			if lease != nil {
				lease, err = c.Renew(ctx, lease)
			} else {
				lease, err = c.Request(ctx, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, c.InterfaceAddr()...))))
			}
			c.Close()
		}
		if err != nil {
			lease = nil
			if ctx.Err() == nil {
				n.log.Info("DHCP: no lease yet; retrying", "interface", ifname, "err", err, "in", backoff)
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		if err := n.applyLease(ifname, lease); err != nil {
			n.log.Error("DHCP: applying the lease", "interface", ifname, "err", err)
		}
		renew := lease.ACK.IPAddressLeaseTime(time.Hour) / 2
		select {
		case <-ctx.Done():
		case <-time.After(max(renew, 30*time.Second)):
		}
	}
}

func (n *network) applyLease(ifname string, l *nclient4.Lease) error {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return err
	}
	ack := l.ACK
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	ipn := &net.IPNet{IP: ack.YourIPAddr, Mask: mask}
	n.mu.Lock()
	old := n.leases[ifname]
	n.leases[ifname] = l
	n.mu.Unlock()
	if old != nil && !old.ACK.YourIPAddr.Equal(ack.YourIPAddr) {
		oldMask := old.ACK.SubnetMask()
		if oldMask == nil {
			oldMask = old.ACK.YourIPAddr.DefaultMask()
		}
		netlink.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: old.ACK.YourIPAddr, Mask: oldMask}})
	}
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("adding %s: %w", ipn, err)
	}
	if gw := ack.Router(); len(gw) > 0 {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw[0]}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw[0], err)
		}
	}
	if old == nil || !old.ACK.YourIPAddr.Equal(ack.YourIPAddr) {
		n.log.Info("DHCP: address", "interface", ifname, "address", ipn.String(), "gateway", ack.Router(), "dns", ack.DNS())
	}
	n.writeResolvConf()
	n.notify()
	return nil
}

func (n *network) notify() {
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
}

// apply applies the config's interfaces: static addresses replace DHCP on
// the interfaces that have them.
func (n *network) apply(ctx context.Context, cfg machineconfig.Network) error {
	n.mu.Lock()
	n.dns = cfg.Nameservers
	n.mu.Unlock()
	var errs []error
	for _, ifc := range cfg.Interfaces {
		link, err := findLink(ifc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := link.Attrs().Name
		if ifc.MTU != 0 {
			if err := netlink.LinkSetMTU(link, ifc.MTU); err != nil {
				errs = append(errs, fmt.Errorf("%s: MTU %d: %w", name, ifc.MTU, err))
			}
		}
		netlink.LinkSetUp(link)
		if ifc.DHCP {
			n.startDHCP(ctx, name)
			continue
		}
		n.mu.Lock()
		if cancel, ok := n.dhcp[name]; ok {
			cancel()
			delete(n.dhcp, name)
		}
		delete(n.leases, name)
		n.static[name] = true
		n.mu.Unlock()
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
		for _, a := range addrs {
			if !a.IP.IsLinkLocalUnicast() {
				netlink.AddrDel(link, &a)
			}
		}
		for _, a := range ifc.Addresses {
			addr, err := netlink.ParseAddr(a)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if err := netlink.AddrReplace(link, addr); err != nil {
				errs = append(errs, fmt.Errorf("%s: adding %s: %w", name, a, err))
			}
		}
		if ifc.Gateway != "" {
			if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(ifc.Gateway)}); err != nil {
				errs = append(errs, fmt.Errorf("%s: default route via %s: %w", name, ifc.Gateway, err))
			}
		}
		n.log.Info("static address", "interface", name, "addresses", ifc.Addresses, "gateway", ifc.Gateway)
	}
	n.writeResolvConf()
	n.notify()
	return errors.Join(errs...)
}

func findLink(ifc machineconfig.Interface) (netlink.Link, error) {
	if ifc.Name != "" {
		l, err := netlink.LinkByName(ifc.Name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		return l, nil
	}
	hw, _ := net.ParseMAC(ifc.MAC)
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().HardwareAddr.String() == hw.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface has MAC %s", ifc.MAC)
}

// writeResolvConf writes the config's nameservers, else DHCP's.
func (n *network) writeResolvConf() {
	n.mu.Lock()
	dns := slices.Clone(n.dns)
	var search []string
	if len(dns) == 0 {
		for _, name := range sortedLeaseNames(n.leases) {
			for _, ip := range n.leases[name].ACK.DNS() {
				dns = append(dns, ip.String())
			}
			if d := n.leases[name].ACK.DomainName(); d != "" && !slices.Contains(search, d) {
				search = append(search, d)
			}
		}
	}
	n.mu.Unlock()
	var b strings.Builder
	b.WriteString("# written by k2 init\n")
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	for _, d := range slices.Compact(dns) {
		b.WriteString("nameserver " + d + "\n")
	}
	os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644)
}

func sortedLeaseNames(m map[string]*nclient4.Lease) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitAddress waits until some wired interface has a global IPv4
// address, up to timeout.
func (n *network) waitAddress(ctx context.Context, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		if len(n.addresses()) > 0 {
			return nil
		}
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return fmt.Errorf("no address after %s", timeout)
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// primaryAddress is the machine's address for the cluster: the source
// address of the default route, else the first global address.
func (n *network) primaryAddress() string {
	if rs, err := netlink.RouteList(nil, netlink.FAMILY_V4); err == nil {
		for _, r := range rs {
			if r.Dst != nil && !r.Dst.IP.IsUnspecified() {
				continue
			}
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(addrs) > 0 {
					for _, a := range addrs {
						if a.IP.IsGlobalUnicast() {
							return a.IP.String()
						}
					}
				}
			}
		}
	}
	if a := n.addresses(); len(a) > 0 {
		ip, _, _ := net.ParseCIDR(a[0])
		return ip.String()
	}
	return ""
}

// addresses are the global IPv4 addresses of the wired interfaces.
func (n *network) addresses() []string {
	links, err := wired()
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range links {
		addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if a.IP.IsGlobalUnicast() {
				out = append(out, a.IPNet.String())
			}
		}
	}
	return out
}

// dhcpHostname is the host name the DHCP server gave, if any.
func (n *network) dhcpHostname() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, name := range sortedLeaseNames(n.leases) {
		if h := n.leases[name].ACK.HostName(); h != "" {
			return strings.ToLower(h)
		}
	}
	return ""
}

// defaultHostname is k2-<the first interface's MAC without colons>.
func (n *network) defaultHostname() string {
	links, err := wired()
	if err != nil || len(links) == 0 {
		return "k2"
	}
	return "k2-" + strings.ReplaceAll(links[0].Attrs().HardwareAddr.String(), ":", "")
}
