package libvirt

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/digitalocean/go-libvirt"
)

// networkName is the NAT network k2 makes for an environment.
func networkName(env string) string { return "k2-" + env }

// ensureNetwork returns the network env's machines attach to and whether
// k2 owns it: the configured one (started if inactive), or k2-<env>,
// made on first use as an isolated NAT network with DHCP on a free
// subnet.
func (c *conn) ensureNetwork(ctx context.Context, env, reqID string, report func(string, ...any)) (string, bool, error) {
	if name := c.cfg.Network; name != "" {
		ref, err := c.l.NetworkLookupByName(name)
		if isCode(err, libvirt.ErrNoNetwork) {
			return "", false, userErrorf("config.network", "network %q does not exist on %s; name an existing one (virsh net-list --all), or leave network unset and k2 makes one per environment", name, redactURI(c.cfg.URI))
		}
		if err != nil {
			return "", false, c.wrap(ctx, err)
		}
		return name, false, c.startNetwork(ctx, ref, report)
	}
	name := networkName(env)
	for attempt := 0; ; attempt++ {
		ref, err := c.l.NetworkLookupByName(name)
		if err == nil {
			x, err := c.l.NetworkGetXMLDesc(ref, 0)
			if err != nil {
				return "", false, c.wrap(ctx, err)
			}
			n, err := parseNetwork(x)
			if err != nil {
				return "", false, err
			}
			if n.Metadata == nil || n.Metadata.Network == nil || n.Metadata.Network.Environment != env {
				return "", false, userErrorf("config.network", "network %s exists but k2 did not make it for environment %s; remove it (virsh net-destroy/net-undefine %s) or set network to use it", name, env, name)
			}
			return name, true, c.startNetwork(ctx, ref, report)
		}
		if !isCode(err, libvirt.ErrNoNetwork) {
			return "", false, c.wrap(ctx, err)
		}
		if attempt > 0 {
			return "", false, fmt.Errorf("network %s vanished while it was made", name)
		}
		if err := c.makeNetwork(ctx, name, env, reqID, report); err != nil {
			return "", false, err
		}
	}
}

func (c *conn) startNetwork(ctx context.Context, ref libvirt.Network, report func(string, ...any)) error {
	active, err := c.l.NetworkIsActive(ref)
	if err != nil {
		return c.wrap(ctx, err)
	}
	if active == 1 {
		return nil
	}
	report("starting network %s", ref.Name)
	if err := c.l.NetworkCreate(ref); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
		return c.wrap(ctx, fmt.Errorf("starting network %s: %w", ref.Name, err))
	}
	return nil
}

// makeNetwork defines and starts network name on a subnet no other
// libvirt network uses; libvirt refuses one the host routes elsewhere,
// and the next candidate is tried.
func (c *conn) makeNetwork(ctx context.Context, name, env, reqID string, report func(string, ...any)) error {
	used, err := c.usedSubnets(ctx)
	if err != nil {
		return err
	}
	cands := subnetCandidates(env, c.cfg.subnet)
	var lastErr error
	tried := 0
	for _, sn := range cands {
		if overlapsAny(sn, used) {
			continue
		}
		if tried++; tried > 16 {
			break
		}
		ref, err := c.l.NetworkDefineXML(networkSpec(name, env, reqID, sn))
		if err != nil {
			if _, lerr := c.l.NetworkLookupByName(name); lerr == nil {
				return nil // another Create made it meanwhile
			}
			return c.wrap(ctx, fmt.Errorf("defining network %s: %w", name, err))
		}
		if err := c.l.NetworkCreate(ref); err != nil {
			lastErr = err
			c.l.NetworkUndefine(ref)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if strings.Contains(err.Error(), "in use") || strings.Contains(err.Error(), "already") {
				continue // the host uses that subnet
			}
			return fmt.Errorf("starting network %s on %s: %w", name, sn, err)
		}
		if err := c.l.NetworkSetAutostart(ref, 1); err != nil && !notSupported(err) {
			return c.wrap(ctx, err)
		}
		report("network %s: NAT on %s (DHCP)", name, sn)
		return nil
	}
	if c.cfg.subnet.IsValid() {
		return userErrorf("config.subnet", "subnet %s cannot be used: %v; choose another", c.cfg.subnet, lastErr)
	}
	return fmt.Errorf("no free subnet for network %s among %d tried (last: %w); set subnet", name, tried, lastErr)
}

// usedSubnets are the subnets of every libvirt network on the host.
func (c *conn) usedSubnets(ctx context.Context) ([]netip.Prefix, error) {
	nets, _, err := c.l.ConnectListAllNetworks(1, 0)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	var out []netip.Prefix
	for _, n := range nets {
		x, err := c.l.NetworkGetXMLDesc(n, 0)
		if err != nil {
			continue // gone meanwhile
		}
		nx, err := parseNetwork(x)
		if err != nil {
			continue
		}
		for _, ip := range nx.IPs {
			if p, ok := ipPrefix(ip); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func ipPrefix(ip networkIPXML) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(ip.Address)
	if err != nil {
		return netip.Prefix{}, false
	}
	bits := -1
	switch {
	case ip.Prefix != "":
		fmt.Sscanf(ip.Prefix, "%d", &bits)
	case ip.Netmask != "":
		m, err := netip.ParseAddr(ip.Netmask)
		if err != nil || !m.Is4() {
			return netip.Prefix{}, false
		}
		b := m.As4()
		bits = 0
		for _, x := range b {
			for ; x&0x80 != 0; x <<= 1 {
				bits++
			}
		}
	default:
		bits = 24
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

func overlapsAny(p netip.Prefix, list []netip.Prefix) bool {
	for _, q := range list {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

// subnetCandidates are the subnets to try for env's network: the
// configured one, else /24s from 192.168.200.0 to 192.168.254.0 (then
// 100-199), starting at one derived from env so that environments made at
// once seldom race for the same. k2's pod and service ranges (10.42/16,
// 10.43/16) and libvirt's default (192.168.122/24) are never among them.
func subnetCandidates(env string, configured netip.Prefix) []netip.Prefix {
	if configured.IsValid() {
		return []netip.Prefix{configured}
	}
	h := sha256.Sum256([]byte(env))
	start := int(binary.BigEndian.Uint16(h[:2]) % 55)
	var out []netip.Prefix
	for i := range 55 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(200 + (start+i)%55), 0}), 24))
	}
	for i := 100; i < 200; i++ {
		if i != 122 {
			out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(i), 0}), 24))
		}
	}
	return out
}

// networkSpec is the XML of env's NAT network on subnet sn: the host is
// .1, DHCP hands out .10 up to the last address (libvirt names the bridge).
func networkSpec(name, env, reqID string, sn netip.Prefix) string {
	n := networkXML{Name: name, Metadata: &metadata{Network: &networkMeta{Environment: env, RequestID: reqID}}}
	n.Forward = &forwardXML{Mode: "nat"}
	n.Bridge = &bridgeXML{STP: "on", Delay: "0"}
	gw := sn.Addr().Next()
	first := gw
	for range 9 {
		first = first.Next()
	}
	last := lastAddr(sn).Prev()
	ip := networkIPXML{Address: gw.String(), Prefix: fmt.Sprint(sn.Bits()),
		DHCP: &dhcpXML{Ranges: []rangeXML{{Start: first.String(), End: last.String()}}}}
	n.IPs = []networkIPXML{ip}
	return mustXML(n)
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// deleteNetwork stops and removes a network; a missing one is gone.
func (c *conn) deleteNetwork(ctx context.Context, name string) error {
	ref, err := c.l.NetworkLookupByName(name)
	if isCode(err, libvirt.ErrNoNetwork) {
		return nil
	}
	if err != nil {
		return c.wrap(ctx, err)
	}
	if err := c.l.NetworkDestroy(ref); err != nil && !isCode(err, libvirt.ErrOperationInvalid, libvirt.ErrNoNetwork) {
		return c.wrap(ctx, fmt.Errorf("stopping network %s: %w", name, err))
	}
	if err := c.l.NetworkUndefine(ref); err != nil && !isCode(err, libvirt.ErrNoNetwork) {
		return c.wrap(ctx, fmt.Errorf("removing network %s: %w", name, err))
	}
	return nil
}

// ownedNetworks lists the networks k2 made: name → metadata.
func (c *conn) ownedNetworks(ctx context.Context) (map[string]*networkMeta, error) {
	nets, _, err := c.l.ConnectListAllNetworks(1, 0)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	out := map[string]*networkMeta{}
	for _, n := range nets {
		if !strings.HasPrefix(n.Name, "k2-") {
			continue
		}
		x, err := c.l.NetworkGetXMLDesc(n, 0)
		if err != nil {
			continue
		}
		nx, err := parseNetwork(x)
		if err != nil || nx.Metadata == nil || nx.Metadata.Network == nil {
			continue
		}
		out[n.Name] = nx.Metadata.Network
	}
	return out, nil
}
