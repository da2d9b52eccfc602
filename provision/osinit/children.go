package osinit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k2.dev/k2/provision/machineconfig"
)

// children are the processes a config asks for: `k2 server` when the
// machine serves the cluster, then `k2 agent` when it is a node.
func (r *runner) children(cfg *machineconfig.Config) ([]*process, error) {
	var out []*process
	if cfg.Serves() {
		p, err := r.serverProcess(cfg)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if cfg.RunsNode() {
		out = append(out, r.agentProcess(cfg))
	}
	return out, nil
}

func (r *runner) serverProcess(cfg *machineconfig.Config) (*process, error) {
	cp := cfg.ControlPlane
	argv := []string{r.o.K2Binary, "server",
		"--data-dir", filepath.Join(r.o.DataDir, "server"),
		"--port", strconv.Itoa(cfg.Port()), "--join-port", strconv.Itoa(cfg.JoinPort())}
	for _, s := range cp.TLSSANs {
		argv = append(argv, "--tls-san", s)
	}
	if cp.ServiceCIDR != "" {
		argv = append(argv, "--service-cidr", cp.ServiceCIDR)
	}
	if cp.ClusterCIDR != "" {
		argv = append(argv, "--cluster-cidr", cp.ClusterCIDR)
	}
	if a := r.machineAddress(); a != "" {
		argv = append(argv, "--advertise-address", a)
	}
	caPEM, err := cfg.CACert()
	if err != nil {
		return nil, err
	}
	url := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port()))
	return &process{
		name: "server", argv: argv, console: r.console, log: r.log, reaper: r.reaper,
		// The identity travels as the seed 'k2 server' unpacks on its
		// first start (see 'k2 server --help'); never on the command line.
		env:   []string{"K2_SERVER_SEED=" + strings.TrimSpace(cp.Identity)},
		ready: func(ctx context.Context) error { return r.waitReadyz(ctx, url, caPEM) },
	}, nil
}

func (r *runner) agentProcess(cfg *machineconfig.Config) *process {
	server, joinURL := cfg.Server, cfg.JoinEndpoint()
	if cfg.Serves() {
		// The node on the control-plane machine joins its own server.
		server = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port()))
		joinURL = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.JoinPort()))
	}
	argv := []string{r.o.K2Binary, "agent",
		"--data-dir", filepath.Join(r.o.DataDir, "agent"),
		"--server", server, "--role", cfg.Role, "--runtime", cfg.RuntimeName()}
	if joinURL != "" {
		argv = append(argv, "--join-url", joinURL)
	}
	if cfg.NodeName != "" {
		argv = append(argv, "--node-name", cfg.NodeName)
	}
	if a := r.machineAddress(); a != "" {
		argv = append(argv, "--node-ip", a)
	}
	if len(cfg.Labels) > 0 {
		var kv []string
		for k, v := range cfg.Labels {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		argv = append(argv, "--labels", strings.Join(kv, ","))
	}
	return &process{
		name: "agent", argv: argv, console: r.console, log: r.log, reaper: r.reaper,
		env: []string{"K2_AGENT_TOKEN=" + cfg.Token}, // not argv: ps shows argv
	}
}

// machineAddress is k2 OS's address for the cluster; "" when k2 init is
// not PID 1 (the children find their own, or K2_MACHINE_ADDRESS names it).
func (r *runner) machineAddress() string {
	if r.mach == nil || r.mach.net == nil {
		return ""
	}
	return r.mach.net.primaryAddress()
}

// waitReadyz polls the server's /readyz, verifying it with the cluster CA.
func (r *runner) waitReadyz(ctx context.Context, url string, caPEM []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("the identity's CA certificate does not parse")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer hc.CloseIdleConnections()
	t0, lastLog := time.Now(), time.Now()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/readyz", nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				r.log.Info("k2 server ready", "url", url, "after", time.Since(t0).Round(100*time.Millisecond))
				return nil
			}
			err = fmt.Errorf("%s", resp.Status)
		}
		if time.Since(lastLog) > 30*time.Second {
			r.log.Info("waiting for k2 server", "url", url, "last", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
