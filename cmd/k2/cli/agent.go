package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/agent"
	"k2.dev/k2/provision/node"
)

// envOr returns $name, or def when it is unset.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// hostMemory is the machine's memory from /proc/meminfo (4Gi if unknown).
func hostMemory() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err == nil {
		var kb int64
		for _, line := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(line, "MemTotal: %d kB", &kb); err == nil {
				return fmt.Sprintf("%dKi", kb)
			}
		}
	}
	return "4Gi"
}

// agentFlags are k2 agent's flags.
type agentFlags struct {
	o                   agent.Options
	labels, cpu, memory string
	runtimeName, server string
	token               secretFlag
}

func newAgentCmd(g *globals) *cobra.Command {
	a := agentFlags{token: secretFlag{name: "token", env: "K2_AGENT_TOKEN", what: "join token"}}
	cmd := &cobra.Command{
		Use:   "agent --server URL --token TOKEN",
		Short: "Join this machine to a k2 cluster and run the pods bound to it",
		Long: `Join this machine to a k2 cluster and run the pods bound to it, as a kubelet.

The agent fetches the cluster CA from the join endpoint (the --server host on
port 6444 unless --join-url is given), checks it against the hash in the join
token, and exchanges the token for a node certificate; the credentials are
kept in --data-dir, so a restarted agent does not join again. It then
registers a Node with the given capacity and labels (k2.dev/runtime says
which runtime runs its pods), keeps it Ready and its Lease in
kube-node-lease fresh, and runs the pods scheduled to it.

Runtimes (--runtime):
  kubelet  real pods: the Kubernetes kubelet runs inside this process and
           talks CRI to the containerd daemon compiled into k2 (run as a
           child, with its own root, state and socket per node); pods get
           CNI bridge networking from the node's pod CIDR, Services work
           through an in-process kube-proxy (iptables) and the agent answers
           cluster DNS on 169.254.20.10. Needs root, runc, the CNI plugins
           (/usr/lib/cni), iptables, and containerd-shim-runc-v2 beside k2
           ('make build' puts it in bin/); the agent names what is missing.
  sim      simulated pods: they get IPs and report Running/Ready, but no
           container runs (scale tests, machines without root).
  auto     (default) kubelet where it can run, else sim; the reason is
           logged and kept in the node's k2.dev/runtime-reason annotation.

Stopping a kubelet agent (SIGTERM) removes its pods, mounts, cgroups and
iptables chains: a stopped machine is a machine powered off.

Every flag can also be set through the environment (K2_AGENT_SERVER,
K2_AGENT_TOKEN, K2_AGENT_DATA_DIR, K2_AGENT_NODE_NAME, K2_AGENT_LABELS,
K2_AGENT_CPU, K2_AGENT_MEMORY, K2_AGENT_ROLE, K2_AGENT_RUNTIME,
K2_MACHINE_ADDRESS for --node-ip); this is how provider plugins configure
the agents they start.`,
		Example: `  k2 agent --server https://10.0.0.1:6443 --token K2<hash>::abcdef.0123456789abcdef
  k2 agent --server https://127.0.0.1:6443 --token "$TOKEN" --node-name w1 \
      --labels k2.dev/pool=gpu --cpu 4 --memory 8Gi --data-dir /tmp/w1`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd.Context(), g, &a) },
	}
	f := cmd.Flags()
	f.StringVar(&a.server, "server", os.Getenv("K2_AGENT_SERVER"), "API server URL, https://host:6443; several servers separated by commas (the agent fails over between them)")
	a.token.register(f, "join token (K2<ca-hash>::<id>.<key>) from 'k2 token create'; not needed once --data-dir holds the node's credentials")
	f.StringVar(&a.o.JoinURL, "join-url", "", "join endpoint (default: each --server host on port 6444); several separated by commas")
	f.StringVar(&a.o.DataDir, "data-dir", os.Getenv("K2_AGENT_DATA_DIR"), "where the node's credentials and state live (default $K2_HOME/agent)")
	f.StringVar(&a.o.NodeName, "node-name", os.Getenv("K2_AGENT_NODE_NAME"), "node name (default: the host name)")
	f.StringVar(&a.o.Role, "role", envOr("K2_AGENT_ROLE", agent.RoleWorker), "worker or control-plane")
	f.StringVar(&a.labels, "labels", os.Getenv("K2_AGENT_LABELS"), "extra node labels, k=v,k=v")
	f.StringVar(&a.cpu, "cpu", envOr("K2_AGENT_CPU", fmt.Sprint(runtime.NumCPU())), "CPU capacity to advertise (sim runtime; the kubelet reports the machine's own)")
	f.StringVar(&a.memory, "memory", envOr("K2_AGENT_MEMORY", hostMemory()), "memory capacity to advertise, e.g. 4Gi (sim runtime; the kubelet reports the machine's own)")
	f.StringVar(&a.runtimeName, "runtime", envOr("K2_AGENT_RUNTIME", agent.RuntimeAuto), "pod runtime: auto, kubelet or sim")
	f.StringVar(&a.o.NodeIP, "node-ip", os.Getenv("K2_MACHINE_ADDRESS"), "the node's address (default: the default route's source address)")
	f.StringSliceVar(&a.o.ForwardLoopback, "forward-loopback", splitList(os.Getenv("K2_AGENT_FORWARD_LOOPBACK")), "host loopback addresses (a registry on 127.0.0.1:5000) to make reachable in a node with its own network namespace")
	f.StringVar(&a.o.HostNetNS, "host-netns", os.Getenv("K2_AGENT_HOST_NETNS"), "the host's network namespace (a path) --forward-loopback connects in (default /proc/1/ns/net)")
	f.StringVar(&a.o.ResolvConf, "resolv-conf", os.Getenv("K2_AGENT_RESOLV_CONF"), "resolver configuration for names outside the cluster: the node's cluster DNS forwards to its nameservers (loopback ones are dropped), pods with dnsPolicy Default get it (default /etc/resolv.conf)")
	cmd.AddCommand(newAgentCleanupCmd(g))
	return cmd
}

// runAgent checks the flags, resolves the join token and runs the agent
// until ctx ends.
func runAgent(ctx context.Context, g *globals, a *agentFlags) error {
	o := &a.o
	o.ServerURL, o.RuntimeName = a.server, a.runtimeName
	var err error
	if o.Token, err = a.token.resolve(); err != nil {
		return err
	}
	if o.DataDir == "" {
		o.DataDir = filepath.Join(g.home, "agent")
	}
	if o.ServerURL == "" {
		return usererr.Usage("--server is required (or K2_AGENT_SERVER)")
	}
	if o.CPU, err = resource.ParseQuantity(a.cpu); err != nil {
		return usererr.Usage("--cpu %q: %v", a.cpu, err)
	}
	if o.Memory, err = resource.ParseQuantity(a.memory); err != nil {
		return usererr.Usage("--memory %q: %v", a.memory, err)
	}
	if a.labels != "" {
		o.Labels = map[string]string{}
		for _, kv := range strings.Split(a.labels, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || k == "" {
				return usererr.Usage("--labels: %q is not key=value", kv)
			}
			o.Labels[k] = v
		}
	}
	if _, ok := agent.Runtimes[o.RuntimeName]; !ok && o.RuntimeName != agent.RuntimeAuto && o.RuntimeName != agent.RuntimeKubelet {
		return usererr.Usage("--runtime %q: use auto, kubelet or sim", o.RuntimeName)
	}
	if self, err := os.Executable(); err == nil {
		o.K2Binary = self
	}
	o.Logger = g.logger()
	if err := agent.Run(ctx, *o); err != nil {
		return usererr.Wrap(usererr.KindFailure, err, "")
	}
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func newAgentCleanupCmd(g *globals) *cobra.Command {
	var dataDir, nodeName string
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what a killed kubelet agent left behind (containers, mounts, cgroups)",
		Long: `Remove what a kubelet agent that was killed (no clean stop) left on this
machine: its runc shims and containers, its containerd, the mounts under its
data dir and run dir, its cgroup root /k2/<node>, the KUBE-* iptables chains
and the DNS address. Run it where the agent ran (same network namespace).
A clean stop (SIGTERM) already does all of this; providers call cleanup after
a machine's process died.`,
		Example: `  k2 agent cleanup --data-dir /var/lib/k2/agent --node-name w1`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || nodeName == "" {
				return usererr.Usage("--data-dir and --node-name are required (or K2_AGENT_DATA_DIR, K2_AGENT_NODE_NAME)")
			}
			if err := node.Cleanup(dataDir, nodeName); err != nil {
				return usererr.Wrap(usererr.KindFailure, err, "")
			}
			fmt.Fprintf(g.stderr, "node %s cleaned up\n", nodeName)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", os.Getenv("K2_AGENT_DATA_DIR"), "the agent's data dir")
	cmd.Flags().StringVar(&nodeName, "node-name", os.Getenv("K2_AGENT_NODE_NAME"), "the agent's node name")
	return cmd
}
