package node

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The records of the Kubernetes DNS specification (schema 1.1.0) the node's
// DNS serves, <zone> being the cluster domain:
//
//	<svc>.<ns>.svc.<zone>            A/AAAA: the ClusterIPs, or a headless
//	                                 Service's ready endpoints; CNAME: an
//	                                 ExternalName Service's name
//	<host>.<svc>.<ns>.svc.<zone>     A/AAAA: the endpoint whose hostname (or
//	                                 dashed address, 10-42-1-5) is <host>
//	_<port>._<proto>.<svc>.<ns>.svc.<zone>
//	                                 SRV: the named port, at the Service's name,
//	                                 or for a headless one at each endpoint's
//	<a-b-c-d>.<ns>.pod.<zone>        A: a.b.c.d (any pod address, unverified)
//	<reversed>.in-addr.arpa          PTR: a ClusterIP's Service, an endpoint's
//	                                 hostname
//	dns-version.<zone>               TXT: the schema version
//
// A name under the zone that matches nothing is NXDOMAIN; a name that exists
// without a record of the asked type is an empty answer.

// record is one answer; its owner is the question's name.
type record struct {
	typ    dnsmessage.Type
	addr   netip.Addr // A, AAAA
	target string     // CNAME, PTR, SRV (fully qualified)
	port   uint16     // SRV
	text   string     // TXT
}

const recordTTL = 5

// records answers a question about a name under the cluster domain (name
// lowercase, fully qualified). found is false for NXDOMAIN.
func (d *DNS) records(name string, typ dnsmessage.Type) (rrs []record, found bool) {
	rest := strings.TrimSuffix(strings.TrimSuffix(name, d.Domain), ".")
	if rest == "" {
		return nil, true
	}
	if rest == "dns-version" {
		return keep(typ, []record{{typ: dnsmessage.TypeTXT, text: "1.1.0"}}), true
	}
	l := strings.Split(rest, ".")
	switch {
	case l[len(l)-1] == "svc":
		return d.serviceRecords(l[:len(l)-1], typ)
	case l[len(l)-1] == "pod":
		return podRecords(l[:len(l)-1], typ)
	}
	return nil, false
}

// serviceRecords answers <…>.svc.<zone>; l are the labels before "svc".
func (d *DNS) serviceRecords(l []string, typ dnsmessage.Type) ([]record, bool) {
	switch len(l) {
	case 0, 1: // svc.<zone>, <ns>.svc.<zone>
		return nil, true
	case 2: // <svc>.<ns>
		svc, err := d.services.Services(l[1]).Get(l[0])
		if err != nil {
			return nil, false
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return []record{{typ: dnsmessage.TypeCNAME, target: fqdn(svc.Spec.ExternalName)}}, true
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone {
			var rrs []record
			for _, s := range svc.Spec.ClusterIPs {
				if ip, err := netip.ParseAddr(s); err == nil {
					rrs = append(rrs, addrRecord(ip))
				}
			}
			return keep(typ, rrs), true
		}
		var rrs []record
		seen := map[netip.Addr]bool{}
		for _, ep := range d.readyEndpoints(svc) {
			if !seen[ep.addr] {
				seen[ep.addr] = true
				rrs = append(rrs, addrRecord(ep.addr))
			}
		}
		return keep(typ, rrs), true
	case 3:
		if strings.HasPrefix(l[0], "_") { // _<proto>.<svc>.<ns>: exists if the Service does
			_, err := d.services.Services(l[2]).Get(l[1])
			return nil, err == nil
		}
		svc, err := d.services.Services(l[2]).Get(l[1])
		if err != nil {
			return nil, false
		}
		var rrs []record
		for _, ep := range d.readyEndpoints(svc) {
			if ep.host == l[0] {
				rrs = append(rrs, addrRecord(ep.addr))
			}
		}
		return keep(typ, rrs), len(rrs) > 0 // the name exists if an endpoint has it
	case 4: // _<port>._<proto>.<svc>.<ns>
		if !strings.HasPrefix(l[0], "_") || !strings.HasPrefix(l[1], "_") {
			return nil, false
		}
		svc, err := d.services.Services(l[3]).Get(l[2])
		if err != nil {
			return nil, false
		}
		port, proto := l[0][1:], l[1][1:]
		svcName := fqdn(svc.Name + "." + svc.Namespace + ".svc." + d.Domain)
		var rrs []record
		if svc.Spec.ClusterIP != corev1.ClusterIPNone && svc.Spec.Type != corev1.ServiceTypeExternalName {
			for _, p := range svc.Spec.Ports {
				if strings.EqualFold(p.Name, port) && strings.EqualFold(string(p.Protocol), proto) {
					rrs = append(rrs, record{typ: dnsmessage.TypeSRV, target: svcName, port: uint16(p.Port)})
				}
			}
		} else {
			for _, ep := range d.readyEndpoints(svc) {
				for _, p := range ep.ports {
					if p.Name != nil && strings.EqualFold(*p.Name, port) && p.Port != nil &&
						(p.Protocol == nil && proto == "tcp" || p.Protocol != nil && strings.EqualFold(string(*p.Protocol), proto)) {
						rrs = append(rrs, record{typ: dnsmessage.TypeSRV, target: ep.host + "." + svcName, port: uint16(*p.Port)})
					}
				}
			}
		}
		return keep(typ, rrs), len(rrs) > 0
	}
	return nil, false
}

// podRecords answers <a-b-c-d>.<ns>.pod.<zone>; l are the labels before
// "pod".
func podRecords(l []string, typ dnsmessage.Type) ([]record, bool) {
	switch len(l) {
	case 0, 1:
		return nil, true
	case 2:
		ip, err := netip.ParseAddr(strings.ReplaceAll(l[0], "-", "."))
		if err != nil || !ip.Is4() {
			return nil, false
		}
		return keep(typ, []record{addrRecord(ip)}), true
	}
	return nil, false
}

// endpoint is a ready endpoint address of a Service with its DNS host
// label and its slice's ports.
type endpoint struct {
	addr  netip.Addr
	host  string
	ports []discoveryv1.EndpointPort
}

func (d *DNS) readyEndpoints(svc *corev1.Service) []endpoint {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, _ := d.endpoints.EndpointSlices(svc.Namespace).List(sel)
	var out []endpoint
	for _, es := range slices {
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				host := strings.ReplaceAll(strings.ReplaceAll(ip.String(), ".", "-"), ":", "-")
				if ep.Hostname != nil && *ep.Hostname != "" {
					host = strings.ToLower(*ep.Hostname)
				}
				out = append(out, endpoint{addr: ip, host: host, ports: es.Ports})
			}
		}
	}
	return out
}

// reverse answers a PTR question for a cluster address: the Service whose
// ClusterIP it is, or the endpoints that have it and a hostname. found is
// false for an address the cluster does not know (the question then goes
// upstream).
func (d *DNS) reverse(name string) ([]record, bool) {
	ip, ok := reverseAddr(name)
	if !ok {
		return nil, false
	}
	var rrs []record
	svcs, _ := d.services.List(labels.Everything())
	for _, s := range svcs {
		for _, c := range s.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(c); err == nil && a == ip {
				rrs = append(rrs, record{typ: dnsmessage.TypePTR, target: fqdn(s.Name + "." + s.Namespace + ".svc." + d.Domain)})
			}
		}
	}
	eps, _ := d.endpoints.List(labels.Everything())
	for _, es := range eps {
		svc := es.Labels[discoveryv1.LabelServiceName]
		for _, ep := range es.Endpoints {
			if ep.Hostname == nil || *ep.Hostname == "" || svc == "" {
				continue
			}
			for _, a := range ep.Addresses {
				if p, err := netip.ParseAddr(a); err == nil && p == ip {
					rrs = append(rrs, record{typ: dnsmessage.TypePTR, target: fqdn(*ep.Hostname + "." + svc + "." + es.Namespace + ".svc." + d.Domain)})
				}
			}
		}
	}
	return rrs, len(rrs) > 0
}

// reverseAddr parses d.c.b.a.in-addr.arpa. and the 32 nibbles of
// ….ip6.arpa.
func reverseAddr(name string) (netip.Addr, bool) {
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa."); ok {
		l := strings.Split(v4, ".")
		if len(l) != 4 {
			return netip.Addr{}, false
		}
		ip, err := netip.ParseAddr(l[3] + "." + l[2] + "." + l[1] + "." + l[0])
		return ip, err == nil
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa."); ok {
		l := strings.Split(v6, ".")
		if len(l) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := 0; i < 32; i++ {
			n, err := strconv.ParseUint(l[31-i], 16, 8)
			if err != nil || len(l[31-i]) != 1 {
				return netip.Addr{}, false
			}
			b[i/2] |= byte(n) << (4 * (1 - i%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

func addrRecord(ip netip.Addr) record {
	if ip.Is4() {
		return record{typ: dnsmessage.TypeA, addr: ip}
	}
	return record{typ: dnsmessage.TypeAAAA, addr: ip}
}

// keep filters rrs to the asked type; a CNAME answers every type.
func keep(typ dnsmessage.Type, rrs []record) []record {
	var out []record
	for _, r := range rrs {
		if r.typ == typ || typ == dnsmessage.TypeALL || r.typ == dnsmessage.TypeCNAME {
			out = append(out, r)
		}
	}
	return out
}

func fqdn(n string) string {
	n = strings.ToLower(n)
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return n
}

// build makes the response message: the question and rrs, owned by the
// question's name.
func build(h dnsmessage.Header, q dnsmessage.Question, rrs []record) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, r := range rrs {
		rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: recordTTL}
		var err error
		switch r.typ {
		case dnsmessage.TypeA:
			err = b.AResource(rh, dnsmessage.AResource{A: r.addr.As4()})
		case dnsmessage.TypeAAAA:
			err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: r.addr.As16()})
		case dnsmessage.TypeCNAME, dnsmessage.TypePTR, dnsmessage.TypeSRV:
			var n dnsmessage.Name
			if n, err = dnsmessage.NewName(r.target); err != nil {
				return nil, fmt.Errorf("%s: %w", r.target, err)
			}
			switch r.typ {
			case dnsmessage.TypeCNAME:
				err = b.CNAMEResource(rh, dnsmessage.CNAMEResource{CNAME: n})
			case dnsmessage.TypePTR:
				err = b.PTRResource(rh, dnsmessage.PTRResource{PTR: n})
			default:
				err = b.SRVResource(rh, dnsmessage.SRVResource{Priority: 0, Weight: 100, Port: r.port, Target: n})
			}
		case dnsmessage.TypeTXT:
			err = b.TXTResource(rh, dnsmessage.TXTResource{TXT: []string{r.text}})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}
