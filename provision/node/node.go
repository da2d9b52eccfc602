// Package node runs a real Kubernetes node inside `k2 agent`: the kubelet
// from k8s.io/kubernetes in the agent's own process, talking CRI to the
// containerd daemon compiled into the same k2 binary (run as a child,
// `k2 containerd`), pods networked by the CNI bridge and host-local
// plugins with the node's pod CIDR, Services by an in-process kube-proxy
// (iptables), and cluster DNS answered by the agent itself.
//
// Everything a node makes lives under its data dir, a per-node directory in
// /run/k2 (sockets, containerd state) and its own cgroup root (/k2/<node>),
// so several nodes run side by side on one host, each in its own network
// namespace (the local provider). Stopping the agent removes its pods,
// mounts, cgroups and iptables chains: a local machine that stops is a
// machine powered off.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/internal/memtrim"
)

// Image is an image archive to import into the node's containerd before
// the kubelet starts (the pause image, images vendored in the artifact).
type Image struct {
	Name   string
	Pinned bool
	Open   func(ctx context.Context) (io.ReadCloser, error)
}

// Options configure Run. K2Binary, DataDir, NodeName, NodeIP, Kubeconfig
// and CAFile are required.
type Options struct {
	K2Binary string
	DataDir  string
	NodeName string
	// NodeIP is the node's address; it must not be loopback.
	NodeIP string
	// Kubeconfig and CAFile are the node's credentials from joining.
	Kubeconfig string
	CAFile     string
	Labels     map[string]string
	MaxPods    int
	// ClusterCIDR is the cluster's pod range (kube-proxy's notion of
	// "inside the cluster"); default 10.42.0.0/16.
	ClusterCIDR string
	// SandboxImage is the pause image's name; it must be among Images.
	SandboxImage string
	// Images are imported at start, in order.
	Images []Image
	// MoreImages, if not nil, lists the images the cluster holds now; the
	// node imports those it lacks every ImageSyncInterval. It is how a
	// node that started before a deploy uploaded the artifact's vendored
	// images (a control plane's own node) gets them.
	MoreImages func(ctx context.Context) ([]Image, error)
	// ResolvConf is the node's resolver configuration (upstream DNS);
	// default /etc/resolv.conf.
	ResolvConf string
	// ForwardLoopback are host loopback addresses (registries on
	// 127.0.0.1:port) made reachable inside the node when it runs in its own
	// network namespace.
	ForwardLoopback []string
	// HostNetNS is the network namespace (a path) ForwardLoopback dials
	// into; default HostNetNS.
	HostNetNS string
	// Ready, if not nil, is closed once the Node is Ready.
	Ready  chan<- struct{}
	Logger *slog.Logger
}

func (o *Options) cgroupRoot() string { return "/k2/" + o.NodeName }

func (o *Options) nodeLabels() map[string]string {
	m := map[string]string{}
	for k, v := range o.Labels {
		m[k] = v
	}
	return m
}

func (o *Options) defaults() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxPods == 0 {
		o.MaxPods = 110
	}
	if o.ClusterCIDR == "" {
		o.ClusterCIDR = "10.42.0.0/16"
	}
	switch {
	case o.K2Binary == "", o.DataDir == "", o.NodeName == "", o.Kubeconfig == "", o.CAFile == "":
		return errors.New("node: K2Binary, DataDir, NodeName, Kubeconfig and CAFile are required")
	case o.NodeIP == "":
		return errors.New("node: a non-loopback node IP is required")
	case o.SandboxImage == "":
		return errors.New("node: a sandbox (pause) image is required")
	}
	return nil
}

// Run runs the node until ctx ends, then tears it down. The node is the
// components below, run by a component.Manager in this order and stopped
// in reverse; one that fails is named in the error.
//
//	node-logs         klog (the kubelet's and kube-proxy's log) to logs/kubelet.log
//	host              the node's cgroup root; at Stop, what the node leaves on the host
//	loopback-forward  host registries on 127.0.0.1 reachable inside the node's netns
//	containerd        the daemon (`k2 containerd`), ready when it answers on its socket
//	images            the pause image and the artifact's vendored images imported
//	dns               cluster DNS on DNSAddress, answered from the node's own watch
//	pod-routes        routes to the other nodes' pod CIDRs
//	kube-proxy        Services (iptables)
//	kubelet           pods
//	node-ready        ready when the Node reports Ready
//	memtrim, gc-policy  hand back start-up memory; the GC's idle/busy target
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	if problems := Preflight(o.K2Binary, o.NodeIP); len(problems) > 0 {
		return fmt.Errorf("this machine cannot run real pods: %s", problems[0])
	}
	n, err := newNode(&o)
	if err != nil {
		return err
	}
	m := component.NewManager(o.Logger, n.components()...)
	if err := m.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if o.Ready != nil {
		close(o.Ready)
	}
	err = m.Wait(ctx)
	// Teardown (pods through the CRI, containerd, mounts) runs after ctx
	// ended, with a deadline of its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if serr := m.Stop(sctx); serr != nil {
		o.Logger.Warn("stopping the node", "err", serr)
	}
	return err
}

// node is what the components of one node share.
type node struct {
	o     *Options
	log   *slog.Logger
	start time.Time
	paths containerdPaths
	cs    kubernetes.Interface
	// containerd is set once its component is ready.
	containerd *containerd.Client
}

func newNode(o *Options) (*node, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "k2-agent/" + o.NodeName
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	if o.HostNetNS == "" {
		o.HostNetNS = HostNetNS
	}
	return &node{o: o, log: o.Logger, start: time.Now(), paths: newContainerdPaths(o.DataDir), cs: cs}, nil
}

// components lists the node's components in start order (see Run).
func (n *node) components() []component.Component {
	return []component.Component{
		&nodeLogs{n: n},
		&host{n: n},
		&loopbackForward{n: n, log: n.log.With("component", "forward")},
		&containerdComponent{n: n},
		&images{n: n},
		&dnsServer{n: n, log: n.log.With("component", "dns")},
		&podRoutes{n: n, self: n.o.NodeName, log: n.log.With("component", "routes")},
		&kubeProxy{n: n},
		&kubelet{n: n},
		&nodeReady{n: n},
		// The kubelet and kube-proxy are up: hand back their start-up memory.
		component.Func("memtrim", func(ctx context.Context) error {
			memtrim.ReleaseAfter(ctx, n.log, 10*time.Second, 20*time.Second)
			return nil
		}),
		component.Func("gc-policy", func(ctx context.Context) error {
			gc := memtrim.DefaultGCPolicy
			gc.Log = n.log
			gc.Run(ctx)
			return nil
		}),
	}
}

// Cleanup removes what a node that was killed (no teardown ran) left on
// this machine: its shims and containers, mounts, cgroups, iptables chains,
// the DNS address and the run directory. Run it in the node's network
// namespace. It reports what it could not remove.
func Cleanup(dataDir, nodeName string) error {
	p := newContainerdPaths(dataDir)
	killByArg(p.Socket) // the runc shims of this node
	killByArg(p.Config) // its containerd
	o := &Options{DataDir: dataDir, NodeName: nodeName}
	removeCgroupRoot(o.cgroupRoot())
	unmountUnder(dataDir, filepath.Dir(p.Socket), p.Kubelet)
	left := removeCgroupRoot(o.cgroupRoot())
	removeKubeChains()
	removeDNSAddress()
	removeRunDir(p)
	if !strings.HasPrefix(p.Kubelet, dataDir) {
		_ = os.RemoveAll(p.Kubelet)
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups left behind: %v", left)
	}
	return nil
}
