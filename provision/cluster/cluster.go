// Package cluster holds the deploy steps that turn machines into a running
// cluster and apply an artifact to it: the cluster's identity (PKI, join
// token, ports), the control-plane machine running `k2 server`, the wait for
// /readyz, the workers running `k2 agent`, the wait for Ready nodes, and the
// artifact's layers in order (manifests and Apps with versionless,
// stable-only server-side apply; charts with the Helm SDK).
//
// Every step is idempotent, so engine.Runner can resume a killed deploy from
// its journal: the identity is kept in $K2_HOME/clusters/<env>, machines are
// created by request id, layers are applied with server-side apply or Helm
// upgrade-or-install.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/freeport"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/controlplane"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
	"k2.dev/k2/state"
)

// SeedEnv and the server flags are how the control-plane machine's `k2
// server` learns its identity (see cmd/k2/cli/server.go).
const SeedEnv = "K2_SERVER_SEED"

// DatastoreEndpointEnv gives every server of an external datastore its
// endpoint (k2 server reads it as --datastore-endpoint).
const DatastoreEndpointEnv = "K2_DATASTORE_ENDPOINT"

// Options configure the cluster steps. Home, K2Binary, Provider and
// Artifact are required.
type Options struct {
	Home           string // $K2_HOME
	K2Binary       string // the k2 executable machines run (exec bootstrap)
	Provider       engine.Provider
	ProviderConfig sdk.Config
	Artifact       *artifact.Artifact
	// Previous holds the layer digests of the environment's last successful
	// deployment: unchanged layers are skipped, missing ones removed
	// (k2 upgrade). Nil applies every layer.
	Previous map[string]string
	// Restore is a backup archive (k2 backup's format) the first server
	// starts from instead of an empty datastore (k2 migrate); "" none.
	Restore string
	// ReadyTimeout bounds each wait (control plane, nodes, each layer);
	// default 5 minutes.
	ReadyTimeout time.Duration
	// PullGrace is how long a layer's image pulls may keep failing before
	// the deploy fails (apply.WaitOptions.PullGrace); default 60 s.
	PullGrace time.Duration
	Logger    *slog.Logger
}

// Dir is where k2 keeps an environment's cluster identity.
func Dir(home, env string) string { return filepath.Join(home, "clusters", env) }

// identity is the persisted part of a cluster k2 deployed.
type identity struct {
	// Port and JoinPort are the first server's (Servers[0] repeats them).
	Port     int `json:"port"`
	JoinPort int `json:"joinPort"`
	// Servers are every server's ports, by control-plane index.
	Servers []serverPorts `json:"servers,omitempty"`
	// Datastore is what the servers run on now (engine.Datastore*);
	// empty in identities older than HA: SQLite.
	Datastore string `json:"datastore,omitempty"`
	Token     string `json:"-"` // kept encrypted in the state store
}

// Steps returns the steps after the plan, sharing st.
func Steps(o Options) func(st *engine.State) []engine.Step {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	return func(st *engine.State) []engine.Step {
		c := &run{o: o}
		first := func(m engine.MachinePlan) bool { return m.Index == 0 }
		others := func(m engine.MachinePlan) bool { return m.Index > 0 }
		cp := []string{engine.RoleControlPlane}
		if o.Artifact != nil && o.Artifact.Config.OSName() != sdk.OSK2 {
			// OS talos: the machines run their OS's own Kubernetes; the
			// provider makes their configs, starts the cluster with the
			// first control plane and returns its kubeconfig.
			return []engine.Step{
				&engine.MachinesStep{StepName: "control-plane", Roles: cp, Filter: first, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.osBootstrap, OnCreated: c.keepKubeconfig, Parallel: 1},
				&engine.MachinesStep{StepName: "servers", Roles: cp, Filter: others, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.osBootstrap, OnCreated: c.keepKubeconfig},
				&engine.MachinesStep{StepName: "workers", Roles: []string{engine.RoleWorker}, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.osBootstrap, OnCreated: c.keepKubeconfig},
				&funcStep{name: "nodes-ready", run: c.waitNodes},
				&funcStep{name: "layers", run: c.applyLayers},
			}
		}
		return []engine.Step{
			&funcStep{name: "identity", run: c.identity},
			&engine.MachinesStep{StepName: "control-plane", Roles: cp, Filter: first, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.serverBootstrap, Parallel: 1},
			&funcStep{name: "restore", run: c.restore},
			&funcStep{name: "control-plane-ready", run: c.waitServer},
			&funcStep{name: "datastore", run: c.clusterInit},
			// One at a time: each joins the etcd cluster as a learner,
			// and etcd takes one learner at a time.
			&engine.MachinesStep{StepName: "servers", Roles: cp, Filter: others, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.serverBootstrap, Parallel: 1},
			&funcStep{name: "servers-ready", run: c.waitServers},
			&funcStep{name: "forget-old-nodes", run: c.forgetOldNodes},
			&funcStep{name: "images", run: c.uploadImages},
			&engine.MachinesStep{StepName: "workers", Roles: []string{engine.RoleWorker}, Provider: o.Provider, Config: o.ProviderConfig, Bootstrap: c.agentBootstrap},
			&funcStep{name: "nodes-ready", run: c.waitNodes},
			&funcStep{name: "layers", run: c.applyLayers},
		}
	}
}

// run is the state the steps share beyond engine.State; every field is
// re-derived on resume, so a step skipped as done does not leave it empty.
type run struct {
	o  Options
	id *identity
}

func (c *run) dir(st *engine.State) string { return Dir(c.o.Home, st.Env.Name) }

// load reads (or on first use creates) the environment's identity.
func (c *run) load(ctx context.Context, st *engine.State) (*identity, error) {
	if c.id != nil {
		return c.id, nil
	}
	dir := c.dir(st)
	id := &identity{}
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return nil, fmt.Errorf("reading the cluster identity in %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, id); err != nil {
		return nil, err
	}
	tok, err := st.Store.GetSecret(ctx, st.Env.Name, state.SecretJoinToken)
	if err != nil {
		return nil, fmt.Errorf("reading the join token: %w", err)
	}
	id.Token = string(tok)
	c.id = id
	return id, nil
}

// identity creates the cluster's PKI, a join token and its ports once.
func (c *run) identity(ctx context.Context, st *engine.State) error {
	dir := c.dir(st)
	if _, err := os.Stat(filepath.Join(dir, "cluster.json")); err == nil {
		_, err := c.load(ctx, st)
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := pki.Ensure(filepath.Join(dir, "pki"), pki.Options{SANs: []string{"127.0.0.1", "localhost"}, ServiceIP: net.ParseIP("10.43.0.1")}); err != nil {
		return fmt.Errorf("creating the cluster PKI: %w", err)
	}
	tok, _, err := controlplane.CreateToken(dir, 0, "k2 deploy "+st.Env.Name)
	if err != nil {
		return err
	}
	if err := st.Store.PutSecret(ctx, st.Env.Name, state.SecretJoinToken, []byte(tok.String())); err != nil {
		return err
	}
	port, _ := freeport.Get() // 0 if none: the server's default
	joinPort, _ := freeport.Get()
	id := identity{Port: port, JoinPort: joinPort, Token: tok.String()}
	if st.Plan != nil {
		id.Datastore = st.Plan.Datastore.Kind
	}
	if st.Plan != nil && usesMachineConfig(st.Plan.Bootstrap) {
		// Machines of their own: the well-known ports.
		id.Port, id.JoinPort = machineconfig.DefaultPort, machineconfig.DefaultJoinPort
	}
	b, _ := json.MarshalIndent(id, "", "  ")
	// Atomic: a deploy killed here must find either no identity or a whole one.
	if err := atomicfile.Write(filepath.Join(dir, "cluster.json"), b, 0o600); err != nil {
		return err
	}
	c.id = &id
	return nil
}

// serverURL is the first server's API URL, at the control-plane machine's
// first address as its provider reported it (127.0.0.1 for local machines
// on the host network, the bridge address for local machines in network
// namespaces).
func (c *run) serverURL(ctx context.Context, st *engine.State, id *identity) string {
	if servers, err := c.servers(ctx, st); err == nil && len(servers) > 0 {
		return servers[0].APIURL
	}
	return "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(id.Port))
}

func (c *run) agentBootstrap(ctx context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
	if usesMachineConfig(st.Plan.Bootstrap) {
		return c.machineConfig(ctx, st, m)
	}
	id, err := c.load(ctx, st)
	if err != nil {
		return sdk.Bootstrap{}, err
	}
	var env map[string]string
	var refs []string
	if a := c.o.Artifact; a != nil && a.Config != nil {
		for _, im := range a.Config.Images {
			refs = append(refs, im.Ref)
		}
	}
	if st.Plan != nil {
		for _, app := range st.Plan.Apps { // resolved with this environment's ARGs
			refs = append(refs, app.Image)
		}
	}
	if fw := loopbackRegistries(refs); len(fw) > 0 {
		env = map[string]string{ForwardLoopbackEnv: strings.Join(fw, ",")}
	}
	servers, err := c.servers(ctx, st)
	if err != nil {
		return sdk.Bootstrap{}, err
	}
	var apis, joins []string
	for _, s := range servers {
		apis, joins = append(apis, s.APIURL), append(joins, s.JoinURL)
	}
	if len(apis) == 0 {
		return sdk.Bootstrap{}, fmt.Errorf("no control-plane machine with an address yet")
	}
	return sdk.Bootstrap{
		Method:    sdk.BootstrapExec,
		Env:       env,
		ServerURL: apis[0],
		JoinToken: id.Token,
		// Every server: the agent fails over between them.
		Command: []string{c.o.K2Binary, "agent", "--server", strings.Join(apis, ","), "--join-url", strings.Join(joins, ",")},
	}, nil
}

// ForwardLoopbackEnv tells agents which host loopback addresses to make
// reachable in their network namespace (see 'k2 agent --forward-loopback').
const ForwardLoopbackEnv = "K2_AGENT_FORWARD_LOOPBACK"

// loopbackRegistries are the registries on the deploying host's loopback
// (127.0.0.1:5000, localhost:5000) that image refs name.
func loopbackRegistries(refs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, ref := range refs {
		host, _, _ := strings.Cut(ref, "/")
		h, port, err := net.SplitHostPort(host)
		if err != nil {
			continue
		}
		if ip := net.ParseIP(h); (ip != nil && ip.IsLoopback()) || h == "localhost" {
			addr := net.JoinHostPort("127.0.0.1", port)
			if h == "::1" {
				addr = host
			}
			if !seen[addr] {
				seen[addr] = true
				out = append(out, addr)
			}
		}
	}
	return out
}

// osBootstrap asks for a machine booting the artifact's OS (talos): its
// name, version and the artifact's Kubernetes version; the provider makes
// the rest.
func (c *run) osBootstrap(_ context.Context, st *engine.State, _ engine.MachinePlan) (sdk.Bootstrap, error) {
	return sdk.Bootstrap{Method: st.Plan.Bootstrap, OS: st.Plan.Artifact.OS, OSVersion: st.Plan.Artifact.OSVersion,
		KubernetesVersion: st.Plan.Artifact.Kubernetes}, nil
}

// keepKubeconfig keeps the admin kubeconfig a provider returned for a
// cluster of its machines' OS: beside the environment's identity (what
// the later steps use) and, encrypted, in the state store (k2 kubeconfig).
func (c *run) keepKubeconfig(ctx context.Context, st *engine.State, m engine.MachinePlan, resp *sdk.CreateResponse) error {
	if len(resp.Kubeconfig) == 0 {
		return usererr.New(usererr.KindProvider, "provider %s made machine %s for OS %s but returned no kubeconfig; the provider does not finish what OS %s needs", st.Env.Provider, m.Name, st.Plan.Artifact.OS, st.Plan.Artifact.OS)
	}
	if _, err := clientcmd.Load(resp.Kubeconfig); err != nil {
		return usererr.New(usererr.KindProvider, "provider %s returned a kubeconfig for %s that does not parse: %v", st.Env.Provider, m.Name, err)
	}
	if err := os.MkdirAll(c.dir(st), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(KubeconfigPath(c.o.Home, st.Env.Name), resp.Kubeconfig, 0o600); err != nil {
		return err
	}
	return st.Store.PutSecret(ctx, st.Env.Name, state.SecretKubeconfig, resp.Kubeconfig)
}

// restConfig returns an admin client config for the environment's cluster.
func (c *run) restConfig(ctx context.Context, st *engine.State) (*rest.Config, error) {
	if st.Plan.ForeignOS() {
		cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(c.o.Home, st.Env.Name))
		if err != nil {
			return nil, fmt.Errorf("the %s cluster's kubeconfig (from provider %s): %w", st.Plan.Artifact.OS, st.Env.Provider, err)
		}
		cfg.QPS, cfg.Burst = 100, 200
		return cfg, nil
	}
	id, err := c.load(ctx, st)
	if err != nil {
		return nil, err
	}
	kc := filepath.Join(c.dir(st), controlplane.AdminKubeconfig)
	url := c.serverURL(ctx, st, id)
	if cfg, err := clientcmd.BuildConfigFromFlags("", kc); err != nil || cfg.Host != url {
		p := filepath.Join(c.dir(st), "pki")
		ca, err := os.ReadFile(filepath.Join(p, pki.CACert))
		if err != nil {
			return nil, err
		}
		if err := controlplane.WriteKubeconfig(kc, url, ca, filepath.Join(p, pki.AdminCert), filepath.Join(p, pki.AdminKey), "k2-admin"); err != nil {
			return nil, err
		}
		if st.Plan != nil && usesMachineConfig(st.Plan.Bootstrap) {
			if err := verifyByServiceName(kc); err != nil {
				return nil, err
			}
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// KubeconfigPath is the admin kubeconfig k2 keeps for an environment.
func KubeconfigPath(home, env string) string {
	return filepath.Join(Dir(home, env), controlplane.AdminKubeconfig)
}

// funcStep is a step made of a function; its Cleanup does nothing (the
// machines steps undo what matters).
type funcStep struct {
	name string
	run  func(context.Context, *engine.State) error
}

func (f *funcStep) Name() string                                    { return f.name }
func (f *funcStep) Run(ctx context.Context, st *engine.State) error { return f.run(ctx, st) }
func (f *funcStep) Cleanup(context.Context, *engine.State)          {}
