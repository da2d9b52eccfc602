package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// cluster is the k2 environment the suite runs against, in its own
// K2_HOME.
type cluster struct {
	k2, kubectl, home, env string
	logf                   func(string, ...any)
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func (c *cluster) kubeconfig() string {
	return filepath.Join(c.home, "clusters", c.env, "admin.kubeconfig")
}

func (c *cluster) k2cmd(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.k2, args...)
	cmd.Env = append(os.Environ(), "K2_HOME="+c.home, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("k2 %s: %w\n%s", strings.Join(args, " "), err, lastLines(string(out), 40))
	}
	return string(out), nil
}

// deploy builds a K8sfile of one control plane and two workers and deploys
// it with the local provider: real kubelet nodes, reg forwarded into their
// network namespaces, and an upstream DNS where nothing answers.
func (c *cluster) deploy(ctx context.Context, out, reg string) error {
	dir := filepath.Join(out, "cluster")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	k8sfile := "FROM k2/base:v1.37\nMACHINES control-plane=1 worker=2\n"
	if err := os.WriteFile(filepath.Join(dir, "K8sfile"), []byte(k8sfile), 0o644); err != nil {
		return err
	}
	// Names the nodes cannot resolve in the cluster go nowhere: 127.0.0.1
	// in a node's own namespace, where nothing listens on port 53.
	resolv := filepath.Join(out, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf("network: netns\nruntime: kubelet\nforwardRegistries: [%q]\nresolvConf: %q\n", reg, resolv)
	cfgPath := filepath.Join(out, "local.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.home, "clusters", c.env, "cluster.json")); err == nil {
		c.logf("an earlier cluster is still in %s: destroying it", c.home)
		c.destroy()
	}
	if _, err := c.k2cmd(ctx, "build", "-q", "-t", "conformance:v1", dir); err != nil {
		return err
	}
	if _, err := c.k2cmd(ctx, "env", "create", c.env, "--provider", "local", "--provider-config", cfgPath); err != nil {
		if !strings.Contains(err.Error(), "exists") {
			return err
		}
		// An earlier run's environment: this run's registry and resolver.
		if _, err := c.k2cmd(ctx, "env", "set", c.env, "--provider-config", cfgPath); err != nil {
			return err
		}
	}
	c.logf("deploying 1 control plane + 2 kubelet workers (k2 deploy, log: %s)", filepath.Join(out, "deploy.log"))
	t := time.Now()
	outp, err := c.k2cmd(ctx, "deploy", "conformance:v1", "--env", c.env, "--timeout", "10m")
	_ = os.WriteFile(filepath.Join(out, "deploy.log"), []byte(outp), 0o644)
	if err != nil {
		return err
	}
	c.logf("cluster ready in %s; kubeconfig %s", time.Since(t).Round(time.Second), c.kubeconfig())
	return nil
}

func (c *cluster) destroy() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := c.k2cmd(ctx, "destroy", c.env, "--yes"); err != nil {
		c.logf("destroy: %v", err)
		return
	}
	c.logf("cluster destroyed")
}

// serverNetns is the network namespace of the control-plane machine, from
// the local provider's machine records ("" if it runs on the host's).
func (c *cluster) serverNetns() (string, error) {
	ents, err := os.ReadDir(filepath.Join(c.home, "local", "machines"))
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(c.home, "local", "machines", e.Name(), "machine.json"))
		if err != nil {
			continue
		}
		var r struct {
			Role  string `json:"role"`
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &r) == nil && r.Role == "control-plane" {
			return r.NetNS, nil
		}
	}
	return "", fmt.Errorf("no control-plane machine in %s", filepath.Join(c.home, "local", "machines"))
}

// checkServerRoutes asks the server machine's routing table (ip route get)
// for an address in each node's pod range, an address of the cluster
// range no node has, and two Service addresses. It returns "" if none of
// them would leave through the default route's gateway, else what would.
func (c *cluster) checkServerRoutes(ctx context.Context) string {
	ns, err := c.serverNetns()
	if err != nil {
		return err.Error()
	}
	ip := func(args ...string) (string, error) {
		if ns != "" {
			args = append([]string{"-n", ns}, args...)
		}
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	def, _ := ip("-4", "route", "show", "default")
	f := strings.Fields(def)
	if len(f) < 3 || f[1] != "via" {
		return "" // no default gateway: nothing can leave through it
	}
	gw := f[2]
	kc := exec.CommandContext(ctx, c.kubectl, "--kubeconfig", c.kubeconfig(), "get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}")
	cidrs, _ := kc.Output()
	var addrs []string
	for _, p := range strings.Fields(string(cidrs)) {
		if pr, err := netip.ParsePrefix(p); err == nil {
			addrs = append(addrs, pr.Addr().Next().Next().String())
		}
	}
	addrs = append(addrs, "10.42.254.7", "10.43.0.1", "10.43.254.7")
	for _, a := range addrs {
		out, _ := ip("route", "get", a)
		out, _, _ = strings.Cut(out, "\n")
		if strings.Contains(" "+out+" ", " via "+gw+" ") {
			where := "the host"
			if ns != "" {
				where = "namespace " + ns
			}
			return fmt.Sprintf("ip route get %s in %s: %s", a, where, strings.TrimSpace(out))
		}
	}
	return ""
}
