package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/join"
)

// balancer is the agent's view of the control plane when the cluster has
// several servers, as k3s's agents have one: a TCP proxy on 127.0.0.1 that
// the node's clients (the agent's own, the kubelet, kube-proxy) use as
// their API server and that forwards each connection to one server. It
// keeps to one server while that is ready and fails over to another when
// it is not: a dial that fails moves on at once; a server whose /readyz
// fails twice in a row is left, and the connections to it are closed so
// the clients reconnect through a ready one. TLS passes through untouched:
// every server's certificate covers 127.0.0.1.
type balancer struct {
	ln     net.Listener
	log    *slog.Logger
	health *http.Client

	mu      sync.Mutex
	servers []string // host:port, in preference order
	current string
	fails   map[string]int
	conns   map[string]map[net.Conn]struct{} // client side, by server
}

const (
	healthInterval = 2 * time.Second
	healthFailures = 2
	dialTimeout    = 3 * time.Second
)

// startBalancer listens on 127.0.0.1 and balances over servers (API URLs);
// caPEM and cert (the node's) are for its /readyz checks. It runs until
// ctx ends.
func startBalancer(ctx context.Context, servers []string, caPEM []byte, cert tls.Certificate, log *slog.Logger) (*balancer, error) {
	hosts, err := hostPorts(servers)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the cluster CA is not a PEM certificate")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the API server proxy: %w", err)
	}
	b := &balancer{
		ln:  ln,
		log: log.With("component", "api-balancer"),
		health: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
			DisableKeepAlives: true,
		}},
		servers: hosts, current: hosts[0],
		fails: map[string]int{}, conns: map[string]map[net.Conn]struct{}{},
	}
	go func() { <-ctx.Done(); ln.Close() }()
	go b.serve(ctx)
	go b.checkHealth(ctx)
	b.log.Info("API server proxy listening", "addr", ln.Addr().String(), "servers", hosts)
	return b, nil
}

// URL is what the node's clients use as the API server.
func (b *balancer) URL() string { return "https://" + b.ln.Addr().String() }

// hostPorts turns API URLs into host:port.
func hostPorts(urls []string) ([]string, error) {
	var out []string
	for _, s := range urls {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.Port() == "" {
			return nil, fmt.Errorf("API server %q: want https://host:port", s)
		}
		if !slices.Contains(out, u.Host) {
			out = append(out, u.Host)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no API server")
	}
	return out, nil
}

// SetServers replaces the servers (API URLs), keeping the current one if it
// is still among them.
func (b *balancer) SetServers(urls []string) {
	hosts, err := hostPorts(urls)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Equal(hosts, b.servers) {
		return
	}
	b.log.Info("API servers changed", "servers", hosts)
	b.servers = hosts
	if !slices.Contains(hosts, b.current) {
		b.switchTo(hosts[0], "no longer a server")
	}
}

// switchTo makes s current and closes the connections to the old one.
// b.mu is held.
func (b *balancer) switchTo(s, why string) {
	if s == b.current {
		return
	}
	old := b.current
	b.log.Warn("API server failover", "from", old, "to", s, "reason", why)
	b.current = s
	for c := range b.conns[old] {
		c.Close()
	}
}

// order is the dial order: the current server, then the others that are
// passing their checks, then the rest.
func (b *balancer) order() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := []string{b.current}
	for _, s := range b.servers {
		if s != b.current && b.fails[s] == 0 {
			out = append(out, s)
		}
	}
	for _, s := range b.servers {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (b *balancer) serve(ctx context.Context) {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("accepting", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go b.proxy(ctx, c)
	}
}

func (b *balancer) proxy(ctx context.Context, c net.Conn) {
	defer c.Close()
	var up net.Conn
	var server string
	var err error
	d := net.Dialer{Timeout: dialTimeout}
	for _, s := range b.order() {
		if up, err = d.DialContext(ctx, "tcp", s); err == nil {
			server = s
			break
		}
		b.mu.Lock()
		b.fails[s]++
		if s == b.current {
			for _, o := range b.servers {
				if o != s && b.fails[o] == 0 {
					b.switchTo(o, "dial failed: "+err.Error())
					break
				}
			}
		}
		b.mu.Unlock()
	}
	if up == nil {
		b.log.Debug("no API server answers", "err", err)
		return
	}
	defer up.Close()
	b.track(server, c, true)
	defer b.track(server, c, false)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); closeWrite(up); done <- struct{}{} }()
	go func() { io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

func (b *balancer) track(server string, c net.Conn, add bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		if b.conns[server] == nil {
			b.conns[server] = map[net.Conn]struct{}{}
		}
		b.conns[server][c] = struct{}{}
		return
	}
	delete(b.conns[server], c)
}

// checkHealth asks every server's /readyz every healthInterval and leaves
// the current one after healthFailures failures in a row, for a ready one.
func (b *balancer) checkHealth(ctx context.Context) {
	t := time.NewTicker(healthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		b.mu.Lock()
		servers := slices.Clone(b.servers)
		b.mu.Unlock()
		if len(servers) < 2 {
			continue
		}
		ok := map[string]bool{}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := b.ready(ctx, s)
				mu.Lock()
				ok[s] = r
				mu.Unlock()
			}()
		}
		wg.Wait()
		b.mu.Lock()
		for _, s := range servers {
			if ok[s] {
				b.fails[s] = 0
			} else {
				b.fails[s]++
			}
		}
		if b.fails[b.current] >= healthFailures {
			for _, s := range b.servers {
				if ok[s] {
					b.switchTo(s, "not ready")
					break
				}
			}
		}
		b.mu.Unlock()
	}
}

func (b *balancer) ready(ctx context.Context, server string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+server+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := b.health.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// serverList keeps the balancer's servers up to date: a server added to the
// cluster after this agent joined (k2 upgrade from one server to three) is
// in the list every server's join endpoint answers (GET /v1/servers).
type serverList struct {
	joinURLs []string
	lb       *balancer
	caPEM    []byte
	cert     tls.Certificate
	log      *slog.Logger
}

// serverRefreshInterval is how often the agent asks for the servers.
const serverRefreshInterval = 30 * time.Second

func (l *serverList) refresh(ctx context.Context) {
	ac, err := join.NewAdminClient(l.caPEM, l.cert)
	if err != nil {
		l.log.Warn("cannot ask for the cluster's servers", "err", err)
		return
	}
	for {
		for _, u := range l.joinURLs {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			list, err := ac.Servers(rctx, u)
			cancel()
			if err != nil {
				continue
			}
			var apis, joins []string
			for _, s := range list {
				apis, joins = append(apis, s.APIURL), append(joins, s.JoinURL)
			}
			if len(apis) > 0 {
				l.lb.SetServers(apis)
				l.joinURLs = joins
			}
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(serverRefreshInterval):
		}
	}
}

// setKubeconfigServer points the kubeconfig at server (the balancer).
func setKubeconfigServer(path, server string) error {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return fmt.Errorf("loading %s: %w", path, err)
	}
	for _, c := range cfg.Clusters {
		c.Server = server
	}
	return clientcmd.WriteToFile(*cfg, path)
}

// splitComma splits a comma-separated list, dropping empty items.
func splitComma(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
