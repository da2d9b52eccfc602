package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state"
)

// TestUserDataBootstrap checks what the deploy engine hands a provider that
// asks for user-data: one machine config per machine, the cluster identity
// only in the first control plane's, the server's address (as the provider
// reported it) in the others'.
func TestUserDataBootstrap(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, env := newTestEnv(t, home, state.Environment{Name: "vm", Provider: "libvirt"})
	cp := engine.MachinePlan{Name: "vm-control-plane-0", Pool: "control-plane", Role: engine.RoleControlPlane}
	w := engine.MachinePlan{Name: "vm-worker-0", Pool: "worker", Role: engine.RoleWorker}
	st := &engine.State{Store: s, Env: env, Plan: &engine.Plan{Bootstrap: sdk.BootstrapUserData, Machines: []engine.MachinePlan{cp, w}}}
	c := &run{o: Options{Home: home}}
	if err := c.identity(ctx, st); err != nil {
		t.Fatal(err)
	}

	b, err := c.serverBootstrap(ctx, st, cp)
	if err != nil {
		t.Fatal(err)
	}
	if b.Method != sdk.BootstrapUserData || len(b.Command) != 0 || len(b.Env) != 0 {
		t.Errorf("bootstrap: method %q, command %v, env %v", b.Method, b.Command, b.Env)
	}
	cfg, warn, err := machineconfig.Load(b.UserData)
	if err != nil || len(warn) > 0 {
		t.Fatalf("the control plane's user-data: %v %v\n%s", err, warn, b.UserData)
	}
	p, err := pki.Ensure(filepath.Join(Dir(home, "vm"), "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := cfg.CACert()
	if err != nil || string(ca) != string(p.CAData) {
		t.Errorf("the identity's CA is not the environment's: %v", err)
	}
	if !cfg.Serves() || !cfg.RunsNode() || cfg.Role != "control-plane" || cfg.NodeName != cp.Name || cfg.Port() != 6443 || cfg.JoinPort() != 6444 ||
		cfg.Labels["k2.dev/pool"] != "control-plane" || cfg.DataDisk == nil || cfg.DataDisk.Device != "auto" || cfg.CAHash != p.CAHash() {
		t.Errorf("control-plane config: %+v", cfg.Redacted())
	}
	tok, _ := join.Parse(cfg.Token)
	if tok.CAHash != p.CAHash() {
		t.Error("the token does not pin the cluster CA")
	}

	// The provider reported the control plane's DHCP address.
	if err := s.PutMachine(ctx, state.Machine{Env: "vm", Name: cp.Name, Role: cp.Role, Pool: cp.Pool, Addresses: []string{"192.168.122.40"}, State: state.MachineCreated}); err != nil {
		t.Fatal(err)
	}
	b, err = c.agentBootstrap(ctx, st, w)
	if err != nil {
		t.Fatal(err)
	}
	wc, _, err := machineconfig.Load(b.UserData)
	if err != nil {
		t.Fatalf("the worker's user-data: %v\n%s", err, b.UserData)
	}
	if wc.Serves() || wc.ControlPlane != nil || wc.Server != "https://192.168.122.40:6443" || wc.JoinURL != "https://192.168.122.40:6444" ||
		wc.Token != cfg.Token || wc.NodeName != w.Name || b.ServerURL != wc.Server {
		t.Errorf("worker config: %+v (ServerURL %q)", wc.Redacted(), b.ServerURL)
	}
	for _, secret := range []string{"PRIVATE KEY", cfg.ControlPlane.Identity[:40]} {
		if strings.Contains(string(b.UserData), secret) {
			t.Errorf("the worker's user-data carries the cluster identity")
		}
	}

	// The host's kubeconfig dials the machine's address and verifies the
	// certificate for the name every serving certificate carries.
	if _, err := c.restConfig(ctx, st); err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(KubeconfigPath(home, "vm"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range kc.Clusters {
		if cl.Server != "https://192.168.122.40:6443" || cl.TLSServerName != "kubernetes" {
			t.Errorf("kubeconfig cluster: server %q, tls-server-name %q", cl.Server, cl.TLSServerName)
		}
	}
}

func TestGenerateMachineConfigs(t *testing.T) {
	dir := t.TempDir()
	res, err := GenerateMachineConfigs(dir, GenOptions{ServerAddress: "10.0.0.10", Workers: 2, DataDisk: "/dev/vdb"})
	if err != nil {
		t.Fatal(err)
	}
	read := func(p string) *machineconfig.Config {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := machineconfig.Load(b)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return c
	}
	cp := read(res.ControlPlane)
	if !cp.Serves() || cp.ControlPlane.TLSSANs[0] != "10.0.0.10" || cp.DataDisk.Device != "/dev/vdb" {
		t.Errorf("control plane: %+v", cp.Redacted())
	}
	if len(res.Workers) != 2 {
		t.Fatalf("workers: %v", res.Workers)
	}
	w2 := read(res.Workers[1])
	if w2.NodeName != "worker-2" || w2.Server != "https://10.0.0.10:6443" || w2.Token != cp.Token {
		t.Errorf("worker-2: %+v", w2.Redacted())
	}
	// A re-run keeps the identity.
	again, err := GenerateMachineConfigs(dir, GenOptions{ServerAddress: "10.0.0.10", Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if c := read(again.ControlPlane); c.Token != cp.Token || c.CAHash != cp.CAHash {
		t.Error("a re-run made a new identity")
	}
	if fi, err := os.Stat(res.ControlPlane); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control-plane.yaml mode: %v %v", fi.Mode(), err)
	}
}
