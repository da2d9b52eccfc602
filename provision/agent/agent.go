// Package agent is k2's node agent (`k2 agent`): it joins a machine to a
// k2 cluster with a join token, registers the Node with its capacity and
// labels, keeps the Node's status and its Lease in kube-node-lease fresh,
// and runs the pods bound to the node through a Runtime, writing their
// status and finalising their deletion as a kubelet does.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/node"
	"k2.dev/k2/provision/node/pause"
)

// Roles of a node.
const (
	RoleWorker       = "worker"
	RoleControlPlane = "control-plane"
)

// Labels the agent sets on its Node.
const (
	LabelRuntime = "k2.dev/runtime"
	LabelPool    = "k2.dev/pool"
	LabelRole    = "k2.dev/role"
	// AnnotationRuntimeReason says why a node runs the sim runtime when
	// the kubelet was wanted (RuntimeAuto) but cannot run here.
	AnnotationRuntimeReason = "k2.dev/runtime-reason"
)

// Runtime names beyond Runtimes: RuntimeKubelet runs the real kubelet and
// containerd (provision/node); RuntimeAuto picks it where it can work and
// sim otherwise.
const (
	RuntimeAuto    = "auto"
	RuntimeKubelet = "kubelet"
	RuntimeSim     = "sim"
)

// Options configure Run. ServerURL, Token (unless DataDir already holds
// credentials) and NodeName are required.
type Options struct {
	// ServerURL is the API server, or several separated by commas: the
	// agent balances over them through a proxy on 127.0.0.1 and fails over
	// when one goes away (balancer.go), and learns servers added later.
	ServerURL string
	// JoinURL defaults to each ServerURL's host on port 6444; several are
	// separated by commas.
	JoinURL  string
	Token    string
	DataDir  string
	NodeName string
	// Role is RoleWorker (default) or RoleControlPlane.
	Role string
	// Labels are added to the Node (k=v).
	Labels map[string]string
	// CPU and Memory are the capacity the node advertises.
	CPU    resource.Quantity
	Memory resource.Quantity
	// MaxPods is the pod capacity; default 110.
	MaxPods int
	// RuntimeName is RuntimeAuto, RuntimeKubelet or a name from Runtimes;
	// default "sim".
	RuntimeName string
	// RuntimeReason is set by Run when RuntimeAuto fell back to sim.
	RuntimeReason string
	// K2Binary is the k2 executable (the kubelet runtime runs its
	// containerd and finds the runc shim beside it).
	K2Binary string
	// NodeIP is the node's address for the kubelet runtime; default the
	// host's default-route address.
	NodeIP string
	// ForwardLoopback are host loopback addresses (registries) the kubelet
	// runtime makes reachable inside a node in its own network namespace.
	ForwardLoopback []string
	// HostNetNS is the host's network namespace (a path) to forward to.
	HostNetNS string
	// ResolvConf is the kubelet runtime's resolver configuration for names
	// outside the cluster; default /etc/resolv.conf.
	ResolvConf string
	// HeartbeatInterval between status and lease renewals; default 10s.
	HeartbeatInterval time.Duration
	// Ready, if not nil, is closed once the node is registered Ready.
	Ready  chan<- struct{}
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("finding the node name: %w", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	if o.Role == "" {
		o.Role = RoleWorker
	}
	if o.Role != RoleWorker && o.Role != RoleControlPlane {
		return fmt.Errorf("role %q: want %s or %s", o.Role, RoleWorker, RoleControlPlane)
	}
	if o.MaxPods == 0 {
		o.MaxPods = 110
	}
	if o.RuntimeName == "" {
		o.RuntimeName = "sim"
	}
	if _, ok := Runtimes[o.RuntimeName]; !ok && o.RuntimeName != RuntimeAuto && o.RuntimeName != RuntimeKubelet {
		return fmt.Errorf("unknown runtime %q; this agent has: auto, kubelet, sim", o.RuntimeName)
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.ServerURL == "" {
		return errors.New("the API server URL is required (--server)")
	}
	if o.DataDir == "" {
		return errors.New("a data directory is required (--data-dir)")
	}
	return nil
}

// Run joins the cluster (unless DataDir holds valid credentials), registers
// the node and runs until ctx ends; the end of ctx is a clean stop (nil).
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Logger.With("node", o.NodeName)
	err := run(ctx, o, log)
	if ctx.Err() != nil {
		log.Info("agent stopped")
		return nil
	}
	return err
}

func run(ctx context.Context, o Options, log *slog.Logger) error {
	servers := splitComma(o.ServerURL)
	if len(servers) == 0 {
		return fmt.Errorf("no API server in %q", o.ServerURL)
	}
	joinURLs := splitComma(o.JoinURL)
	if len(joinURLs) == 0 {
		for _, s := range servers {
			u, err := join.DefaultJoinURL(s)
			if err != nil {
				return err
			}
			joinURLs = append(joinURLs, u)
		}
	}
	creds, err := join.Join(ctx, join.ClientOptions{
		ServerURL: servers[0], JoinURL: strings.Join(joinURLs, ","), Token: o.Token,
		NodeName: o.NodeName, DataDir: o.DataDir, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("joining the cluster: %w", err)
	}
	if creds.Reused {
		log.Info("using existing node credentials", "kubeconfig", creds.Kubeconfig)
	} else {
		log.Info("joined the cluster", "kubeconfig", creds.Kubeconfig)
	}
	// Every client of this node reaches the servers through the balancer.
	caPEM, cert, err := join.LoadNodeCredentials(filepath.Dir(creds.Kubeconfig))
	if err != nil {
		return err
	}
	lb, err := startBalancer(ctx, servers, caPEM, cert, log)
	if err != nil {
		return err
	}
	if err := setKubeconfigServer(creds.Kubeconfig, lb.URL()); err != nil {
		return err
	}
	sl := &serverList{joinURLs: joinURLs, lb: lb, caPEM: caPEM, cert: cert, log: log}
	go sl.refresh(ctx)
	o.JoinURL = strings.Join(joinURLs, ",")
	if o.RuntimeName == RuntimeAuto || o.RuntimeName == RuntimeKubelet {
		if o.NodeIP == "" {
			o.NodeIP = node.DefaultNodeIP()
		}
		problems := node.Preflight(o.K2Binary, o.NodeIP)
		switch {
		case len(problems) == 0:
			return runKubelet(ctx, o, creds, log)
		case o.RuntimeName == RuntimeKubelet:
			return fmt.Errorf("the kubelet runtime cannot run here:\n  - %s\n(--runtime auto falls back to the simulated runtime)", strings.Join(problems, "\n  - "))
		}
		o.RuntimeName, o.RuntimeReason = RuntimeSim, problems[0]
		log.Warn("real pods cannot run on this machine; using the simulated runtime", "reason", o.RuntimeReason)
	}
	return runSim(ctx, o, creds, log)
}

// agent is one running node agent.
type agent struct {
	o   Options
	cs  kubernetes.Interface
	rt  Runtime
	log *slog.Logger
	// podCIDR is the node's spec.podCIDR last given to the runtime.
	podCIDR string
	// kubeletPort is where the agent's kubelet API listens.
	kubeletPort int
}

// runKubelet runs the node with the real kubelet and containerd.
func runKubelet(ctx context.Context, o Options, creds *join.Credentials, log *slog.Logger) error {
	labels := map[string]string{LabelRuntime: RuntimeKubelet, LabelRole: o.Role, LabelPool: o.Role}
	for k, v := range o.Labels {
		labels[k] = v
	}
	images := []node.Image{{Name: pause.Ref, Pinned: true, Open: func(context.Context) (io.ReadCloser, error) {
		var b bytes.Buffer // a few kB
		if err := pause.WriteOCIArchive(&b); err != nil {
			return nil, err
		}
		return io.NopCloser(&b), nil
	}}}
	// Images vendored in the deployed artifact, kept by the control plane.
	credDir := filepath.Dir(creds.Kubeconfig)
	caPEM, cert, err := join.LoadNodeCredentials(credDir)
	if err != nil {
		return err
	}
	// Any server serves them; the first that answers.
	vendoredImages := func(ctx context.Context) ([]node.Image, error) {
		var vendored []join.Image
		var joinURL string
		var err error
		for _, u := range splitComma(o.JoinURL) {
			if vendored, err = join.ListImages(ctx, u, caPEM, cert); err == nil {
				joinURL = u
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("listing the cluster's vendored images: %w", err)
		}
		var out []node.Image
		for _, im := range vendored {
			out = append(out, node.Image{Name: im.Ref, Open: func(ctx context.Context) (io.ReadCloser, error) {
				return join.FetchImage(ctx, joinURL, caPEM, cert, im.Digest)
			}})
		}
		return out, nil
	}
	vendored, err := vendoredImages(ctx)
	if err != nil {
		return err
	}
	images = append(images, vendored...)
	return node.Run(ctx, node.Options{
		K2Binary:     o.K2Binary,
		DataDir:      o.DataDir,
		NodeName:     o.NodeName,
		NodeIP:       o.NodeIP,
		Kubeconfig:   creds.Kubeconfig,
		CAFile:       filepath.Join(credDir, join.CAFile),
		Labels:       labels,
		MaxPods:      o.MaxPods,
		SandboxImage: pause.Ref,
		Images:       images,
		// A deploy uploads the artifact's images after the control plane
		// is up: its own node, started with it, picks them up here.
		MoreImages:      vendoredImages,
		ForwardLoopback: o.ForwardLoopback,
		HostNetNS:       o.HostNetNS,
		ResolvConf:      o.ResolvConf,
		Ready:           o.Ready,
		Logger:          log,
	})
}
