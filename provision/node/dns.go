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
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
)

// DNS is the node's cluster DNS: it answers the names of the Kubernetes DNS
// specification under its domain (records.go) from its own watch of
// Services and EndpointSlices and forwards every other name to the node's
// upstream resolvers.
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
// Names under the cluster domain, and reverse names of the cluster's
// addresses, are answered from the watch (records.go); everything else goes
// to the upstream resolvers.
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
	var rrs []record
	found := false
	switch {
	case strings.HasSuffix(name, "."+d.Domain) || name == d.Domain:
		rrs, found = d.records(name, q.Type)
	case strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa."):
		if rrs, found = d.reverse(name); !found {
			return d.forward(ctx, query, h, q)
		}
	default:
		return d.forward(ctx, query, h, q)
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !found {
		rh.RCode = dnsmessage.RCodeNameError
	}
	out, err := build(rh, q, rrs)
	if err != nil {
		d.Log.Debug("building a DNS answer", "name", name, "err", err)
		return nil
	}
	if len(out) > max {
		// Too long for UDP: the client retries over TCP.
		rh.Truncated = true
		out, _ = build(rh, q, nil)
	}
	return out
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
