// Package local is the built-in provider whose machines are processes on
// this host: each machine is the bootstrap command (for a deploy, `k2
// agent`) running in its own session with its own directory under the
// provider's state directory. It is written only against providers/sdk,
// exactly like an external plugin.
//
// Layout of the state directory:
//
//	<stateDir>/lock                   serialises concurrent plugin processes
//	<stateDir>/machines/<name>/
//	    machine.json                  the record: sdk.Machine, command, env
//	    pid                           "<pid> <start time>" of the process
//	    agent.log                     its stdout and stderr
//	    data/                         its data dir (K2_AGENT_DATA_DIR)
//
// The processes outlive the plugin (which k2 starts per operation): they
// are started with setsid in a new session and process group, and found
// again through the pid file, whose start time guards against pid reuse.
// Delete sends SIGTERM to the process group, then SIGKILL after a grace
// period, and removes the directory.
//
// Networks (config "network"): in netns mode (the default as root) every
// machine runs in its own network namespace, k2-<hash>-<name>, with a veth
// to a bridge k2br<hash> that k2 creates with a 10.x.y.0/24 of its own; the
// host holds the bridge's first address and reaches every machine, the
// control plane's included, through it. Agents there run real pods
// (kubelet + containerd) where they can; the control plane keeps the
// cluster's routes in its own namespace (docs/node.md). Delete
// runs `k2 agent cleanup` in a namespace whose agent was killed, removes the
// namespace, and the bridge with the last machine. In host mode (not root)
// every machine shares the host's network and agents simulate pods.
//
// Not modelled: resource limits (cpu and memory are advertised by the
// agent, not enforced).
package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k2.dev/k2/providers/sdk"
)

// Name is the provider's name.
const Name = "local"

// Environment the provider adds for each machine's process. `k2 agent`
// reads them as defaults of its flags.
const (
	EnvDataDir  = "K2_AGENT_DATA_DIR"
	EnvNodeName = "K2_AGENT_NODE_NAME"
	EnvLabels   = "K2_AGENT_LABELS"
	EnvCPU      = "K2_AGENT_CPU"
	EnvMemory   = "K2_AGENT_MEMORY"
	EnvServer   = "K2_AGENT_SERVER"
	EnvToken    = "K2_AGENT_TOKEN"
	EnvRole     = "K2_AGENT_ROLE"
	// EnvAddress is the machine's own address: `k2 server` binds and
	// advertises it, `k2 agent` registers it as the node's address.
	EnvAddress = "K2_MACHINE_ADDRESS"
	// EnvRuntime is the agent's pod runtime (auto, kubelet or sim).
	EnvRuntime = "K2_AGENT_RUNTIME"
	// EnvHostNetns is the host's network namespace (a path) for agents in
	// a namespace of their own.
	EnvHostNetns = "K2_AGENT_HOST_NETNS"
	// EnvForwardLoopback lists host loopback addresses (registries) an
	// agent in its own namespace makes reachable there.
	EnvForwardLoopback = "K2_AGENT_FORWARD_LOOPBACK"
	// EnvResolvConf is the resolver configuration an agent's node uses
	// for names outside the cluster.
	EnvResolvConf = "K2_AGENT_RESOLV_CONF"
)

// Defaults for a machine that asks for no size.
const (
	defaultCPU    = 2
	defaultMemory = 4 << 30
)

// stopGrace is how long Delete and Power off wait after SIGTERM.
const stopGrace = 10 * time.Second

// killGrace is how long stop waits for a SIGKILLed process to be gone.
const killGrace = 30 * time.Second

// Provider is the local provider.
type Provider struct {
	sdk.UnimplementedProvider
}

// New returns the local provider.
func New() sdk.Provider { return &Provider{} }

var schema = []sdk.ConfigField{
	{Name: "stateDir", Type: sdk.TypeString, Default: "$K2_HOME/local",
		Description: "directory holding one sub-directory per machine (process)"},
	{Name: "network", Type: sdk.TypeString, Default: NetworkAuto,
		Description: "netns: each worker in its own network namespace on a bridge k2 creates (needs root); host: all on the host network, simulated pods; auto: netns where possible"},
	{Name: "runtime", Type: sdk.TypeString, Default: "auto",
		Description: "the agents' pod runtime in netns mode: auto (real pods where the machine can run them), kubelet or sim"},
	{Name: "forwardRegistries", Type: sdk.TypeList,
		Description: "registries on this host's loopback (127.0.0.1:5000) to make reachable inside every node's network namespace, so the nodes pull from them whatever the artifact names"},
	{Name: "resolvConf", Type: sdk.TypeString,
		Description: "resolver configuration (an absolute path) of the nodes: their cluster DNS forwards names outside the cluster to its nameservers and pods with dnsPolicy Default get it; default this host's /etc/resolv.conf"},
}

func capabilities() sdk.Capabilities {
	return sdk.Capabilities{
		Architectures:    []string{runtime.GOARCH},
		CustomSizes:      true,
		MaxMachines:      100,
		BootstrapMethods: []string{sdk.BootstrapExec},
		Power:            true,
		Console:          true,
		PersistentDisks:  true,
	}
}

// Describe names the provider, its capabilities and its config schema.
func (p *Provider) Describe(ctx context.Context, _ *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:         Name,
		Description:  "machines are k2 agent processes on this host (no VMs)",
		Capabilities: capabilities(),
		ConfigSchema: schema,
	}, nil
}

type config struct {
	StateDir          string   `json:"stateDir"`
	Network           string   `json:"network"`
	Runtime           string   `json:"runtime"`
	ForwardRegistries []string `json:"forwardRegistries"`
	ResolvConf        string   `json:"resolvConf"`
}

// networkMode resolves NetworkAuto.
func (c config) networkMode() string {
	if c.Network == NetworkNetns || c.Network == NetworkHost {
		return c.Network
	}
	if netnsUsable() == "" {
		return NetworkNetns
	}
	return NetworkHost
}

func (c config) runtime() string {
	if c.Runtime == "" {
		return "auto"
	}
	return c.Runtime
}

// load decodes the config and fills the default state directory.
func load(c sdk.Config) (config, sdk.Diagnostics) {
	ds := sdk.CheckConfig(schema, c)
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		ds.Errorf("config", "%v", err)
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(sdk.Home(), "local")
	}
	if !filepath.IsAbs(cfg.StateDir) {
		ds.Errorf("config.stateDir", "state directory %q must be an absolute path", cfg.StateDir)
	}
	switch cfg.Network {
	case "", NetworkAuto, NetworkHost:
	case NetworkNetns:
		if why := netnsUsable(); why != "" {
			ds.Errorf("config.network", "network: netns cannot work here: %s; use network: host", why)
		}
	default:
		ds.Errorf("config.network", "network %q: use auto, netns or host", cfg.Network)
	}
	switch cfg.Runtime {
	case "", "auto", "kubelet", "sim":
	default:
		ds.Errorf("config.runtime", "runtime %q: use auto, kubelet or sim", cfg.Runtime)
	}
	for i, r := range cfg.ForwardRegistries {
		host, port, err := net.SplitHostPort(r)
		if ip := net.ParseIP(host); err != nil || port == "" || ((ip == nil || !ip.IsLoopback()) && host != "localhost") {
			ds.Errorf(fmt.Sprintf("config.forwardRegistries[%d]", i), "%q is not a loopback address with a port; give one like 127.0.0.1:5000", r)
		}
	}
	if cfg.ResolvConf != "" {
		if _, err := os.Stat(cfg.ResolvConf); err != nil || !filepath.IsAbs(cfg.ResolvConf) {
			ds.Errorf("config.resolvConf", "resolvConf %q: give the absolute path of a file in resolv.conf format", cfg.ResolvConf)
		}
	}
	return cfg, ds
}

// nodeEnv is what the config adds to a worker's environment in its own
// network namespace: the registries to forward (with any the artifact
// names) and the resolver configuration.
func (c config) nodeEnv(b sdk.Bootstrap) []string {
	var env []string
	if len(c.ForwardRegistries) > 0 {
		fw := []string{}
		seen := map[string]bool{}
		artifact := strings.FieldsFunc(b.Env[EnvForwardLoopback], func(r rune) bool { return r == ',' || r == ' ' })
		for _, a := range append(artifact, c.ForwardRegistries...) {
			if h, p, err := net.SplitHostPort(a); err == nil && h == "localhost" {
				a = net.JoinHostPort("127.0.0.1", p)
			}
			if !seen[a] {
				seen[a] = true
				fw = append(fw, a)
			}
		}
		env = append(env, EnvForwardLoopback+"="+strings.Join(fw, ","))
	}
	if c.ResolvConf != "" {
		env = append(env, EnvResolvConf+"="+c.ResolvConf)
	}
	return env
}

// Validate checks the config and the machines against the capabilities
// without making anything.
func (p *Provider) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	_, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, req.Bootstrap)...)
	return &sdk.ValidateResponse{Diagnostics: ds}, nil
}

// lock takes an exclusive flock on the state directory for one call.
func lock(dir string) (func(), error) {
	if err := os.MkdirAll(filepath.Join(dir, "machines"), 0o755); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking state dir: %w", err)
	}
	return func() { f.Close() }, nil
}

// machineEnv is what a machine's process learns about itself.
func machineEnv(dir, addr string, m sdk.MachineRequest, b sdk.Bootstrap) []string {
	cpu, mem := int64(m.CPU), m.MemoryBytes
	if cpu == 0 {
		cpu = defaultCPU
	}
	if mem == 0 {
		mem = defaultMemory
	}
	labels := []string{}
	if m.Pool != "" {
		labels = append(labels, "k2.dev/pool="+m.Pool)
	}
	for k, v := range m.Labels {
		labels = append(labels, k+"="+v)
	}
	env := []string{
		EnvDataDir + "=" + filepath.Join(dir, "data"),
		EnvNodeName + "=" + m.Name,
		EnvLabels + "=" + strings.Join(labels, ","),
		EnvCPU + "=" + strconv.FormatInt(cpu, 10),
		EnvMemory + "=" + strconv.FormatInt(mem, 10),
		EnvRole + "=" + m.Role,
		EnvAddress + "=" + addr,
	}
	if b.ServerURL != "" {
		env = append(env, EnvServer+"="+b.ServerURL)
	}
	if b.JoinToken != "" {
		env = append(env, EnvToken+"="+b.JoinToken)
	}
	for k, v := range b.Env {
		env = append(env, k+"="+v)
	}
	return env
}
