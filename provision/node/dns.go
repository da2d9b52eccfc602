package node

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// DNS is the node's cluster DNS: it answers <service>.<namespace>.svc.<domain>
// from its own watch of Services and EndpointSlices and forwards every other
// name to the node's upstream resolvers.
//
// k2 serves cluster DNS from each agent rather than running CoreDNS: a
// cluster without internet has no image to pull CoreDNS from, CoreDNS as a
// Go module would add its whole plugin tree to the one binary, and a
// node-local answer never crosses the network (the NodeLocal DNSCache idea,
// with the cache being the informer).
type DNS struct {
	Domain    string
	Upstreams []string // host:port
	Log       *slog.Logger

	services  corelisters.ServiceLister
	endpoints discoverylisters.EndpointSliceLister
}

// NewDNS makes a DNS answering from informers on cs; call Run.
func NewDNS(cs kubernetes.Interface, domain string, upstreams []string, log *slog.Logger) (*DNS, informers.SharedInformerFactory) {
	f := informers.NewSharedInformerFactory(cs, 0)
	d := &DNS{Domain: strings.TrimSuffix(domain, ".") + ".", Upstreams: upstreams, Log: log,
		services: f.Core().V1().Services().Lister(), endpoints: f.Discovery().V1().EndpointSlices().Lister()}
	return d, f
}

// Upstreams reads the nameservers of a resolv.conf, skipping loopback ones
// (they would be this node itself inside a network namespace).
func Upstreams(resolvConf string) []string {
	b, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			if ip, err := netip.ParseAddr(f[1]); err == nil && !ip.IsLoopback() {
				out = append(out, net.JoinHostPort(ip.String(), "53"))
			}
		}
	}
	return out
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Answer returns the response to one DNS query message, or nil to drop it.
func (d *DNS) Answer(ctx context.Context, query []byte, max int) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	if !strings.HasSuffix(name, "."+d.Domain) && name != d.Domain {
		return d.forward(ctx, query, h, q)
	}
	ips, found := d.lookup(name)
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !found {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	for _, ip := range ips {
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch {
		case q.Type == dnsmessage.TypeA && ip.Is4():
			_ = b.AResource(rr, dnsmessage.AResource{A: ip.As4()})
		case q.Type == dnsmessage.TypeAAAA && ip.Is6() && !ip.Is4In6():
			_ = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil || len(out) > max {
		return nil
	}
	return out
}

// lookup resolves <svc>.<ns>.svc.<domain>: the ClusterIPs, or for a
// headless Service its ready endpoints. found is false for a name that
// does not exist (NXDOMAIN).
func (d *DNS) lookup(name string) (ips []netip.Addr, found bool) {
	rest := strings.TrimSuffix(name, "."+d.Domain)
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[2] != "svc" {
		// <ns>.svc.<domain> and svc.<domain> exist but hold no address.
		return nil, (len(parts) == 2 && parts[1] == "svc") || rest == "svc"
	}
	svc, err := d.services.Services(parts[1]).Get(parts[0])
	if err != nil {
		return nil, false
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, true
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		for _, s := range svc.Spec.ClusterIPs {
			if ip, err := netip.ParseAddr(s); err == nil {
				ips = append(ips, ip)
			}
		}
		return ips, true
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, _ := d.endpoints.EndpointSlices(svc.Namespace).List(sel)
	for _, es := range slices {
		for _, ep := range es.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					ips = append(ips, ip)
				}
			}
		}
	}
	return ips, true
}

// forward relays a query to the first upstream that answers; without one
// the answer is SERVFAIL.
func (d *DNS) forward(ctx context.Context, query []byte, h dnsmessage.Header, q dnsmessage.Question) []byte {
	for _, u := range d.Upstreams {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "udp", u)
		if err != nil {
			continue
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(query); err == nil {
			buf := make([]byte, 4096)
			if n, err := c.Read(buf); err == nil {
				c.Close()
				return buf[:n]
			}
		}
		c.Close()
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeServerFailure, RecursionDesired: h.RecursionDesired})
	_ = b.StartQuestions()
	_ = b.Question(q)
	out, _ := b.Finish()
	return out
}
