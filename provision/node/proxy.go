package node

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// runProxy runs kube-proxy in this process, in iptables mode, until ctx
// ends. k2 uses the upstream proxy rather than rules of its own: it is the
// reference implementation of Service semantics (session affinity,
// topology, terminating endpoints) and it is already compiled into the
// binary with the kubelet.
func runProxy(ctx context.Context, o *Options, kubeconfig string) error {
	opts := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	opts.AddFlags(fs)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--hostname-override=" + o.NodeName,
		"--proxy-mode=iptables",
		"--cluster-cidr=" + o.ClusterCIDR,
		// Masquerade Service traffic so replies from a backend on the same
		// bridge come back through the node (no br_netfilter needed).
		"--masquerade-all=true",
		"--healthz-port=0",
		"--metrics-bind-address=127.0.0.1:10249",
		// The conntrack table size and timeouts are host-wide settings a
		// machine in a network namespace may not change: leave them.
		"--conntrack-max-per-core=0",
		"--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		// Lowering oom_score_adj needs CAP_SYS_RESOURCE.
		"--oom-score-adj=0",
	}
	if o.NodeIP != "" {
		args = append(args, "--nodeport-addresses="+o.NodeIP+"/32")
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-proxy flags: %w", err)
	}
	if err := opts.Complete(fs); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := opts.Validate(); err != nil {
		return fmt.Errorf("kube-proxy configuration: %w", err)
	}
	return opts.Run(ctx)
}

// kubeProxy is the kube-proxy component. Upstream's Run never returns (its
// iptables sync loop runs on wait.NeverStop), so Stop does not wait for it:
// its goroutines end with the agent's process.
type kubeProxy struct{ n *node }

func (*kubeProxy) Name() string                    { return "kube-proxy" }
func (*kubeProxy) Init(context.Context) error      { return nil }
func (*kubeProxy) Start(context.Context) error     { return nil }
func (*kubeProxy) Stop(context.Context) error      { return nil }
func (*kubeProxy) StopTimeout() time.Duration      { return 0 }
func (p *kubeProxy) Run(ctx context.Context) error { return runProxy(ctx, p.n.o, p.n.o.Kubeconfig) }
