package node

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"k8s.io/client-go/informers"
)

// dnsServer is the component that serves the node's cluster DNS (DNS) on
// DNSAddress:53, UDP and TCP. Start puts the address on lo and listens, so
// a clash fails the start; Run answers once the node's watch of Services
// and EndpointSlices has synced; Stop closes the listeners and takes the
// address off.
type dnsServer struct {
	n   *node
	log *slog.Logger
	dns *DNS
	inf informers.SharedInformerFactory
	pc  net.PacketConn
	ln  net.Listener
}

func (*dnsServer) Name() string               { return "dns" }
func (*dnsServer) Init(context.Context) error { return nil }

func (d *dnsServer) Start(context.Context) error {
	if err := ensureDNSAddress(); err != nil {
		return err
	}
	d.dns, d.inf = NewDNS(d.n.cs, ClusterDomain, Upstreams(d.n.o.resolvConf()), d.log)
	addr := DNSAddress + ":53"
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	d.pc = pc
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	d.ln = ln
	return nil
}

// Run answers queries until Stop closes the listeners; queries that came
// before the watch synced wait in the socket.
func (d *dnsServer) Run(ctx context.Context) error {
	if err := waitSynced(ctx, d.inf); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { d.serveTCP(ctx, &wg) })
	buf := make([]byte, 4096)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		q := append([]byte(nil), buf[:n]...)
		wg.Go(func() {
			if resp := d.dns.Answer(ctx, q, 512); resp != nil {
				_, _ = d.pc.WriteTo(resp, from)
			}
		})
	}
}

func (d *dnsServer) serveTCP(ctx context.Context, wg *sync.WaitGroup) {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		wg.Go(func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var l [2]byte
			if _, err := readFull(c, l[:]); err != nil {
				return
			}
			q := make([]byte, int(l[0])<<8|int(l[1]))
			if _, err := readFull(c, q); err != nil {
				return
			}
			resp := d.dns.Answer(ctx, q, 65535)
			if resp == nil {
				return
			}
			_, _ = c.Write(append([]byte{byte(len(resp) >> 8), byte(len(resp))}, resp...))
		})
	}
}

func (d *dnsServer) Stop(context.Context) error {
	if d.pc != nil {
		d.pc.Close()
	}
	if d.ln != nil {
		d.ln.Close()
	}
	if d.inf != nil {
		d.inf.Shutdown()
	}
	removeDNSAddress()
	return nil
}

// waitSynced waits for the informers' first lists.
func waitSynced(ctx context.Context, f informers.SharedInformerFactory) error {
	f.Start(ctx.Done())
	for t, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return errors.New("DNS: the watch of " + t.String() + " did not sync")
		}
	}
	return nil
}
