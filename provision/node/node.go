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

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

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

// Run runs the node until ctx ends, then tears it down.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	log := o.Logger
	start := time.Now()
	if problems := Preflight(o.K2Binary, o.NodeIP); len(problems) > 0 {
		return fmt.Errorf("this machine cannot run real pods: %s", problems[0])
	}
	shim, _ := shimDir(o.K2Binary)
	logDir := filepath.Join(o.DataDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	klogFile, err := os.OpenFile(filepath.Join(logDir, "kubelet.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer klogFile.Close()
	klog.LogToStderr(false)
	klog.SetOutput(klogFile)

	if err := ensureCgroupRoot(o.cgroupRoot()); err != nil {
		return fmt.Errorf("creating the node's cgroup root %s: %w", o.cgroupRoot(), err)
	}
	p := newContainerdPaths(o.DataDir)
	if err := writeContainerdConfig(p, o.SandboxImage, []string{cniDir()}, !canLowerOOMScore()); err != nil {
		return fmt.Errorf("writing the containerd config: %w", err)
	}
	if o.HostNetNS == "" {
		o.HostNetNS = HostNetNS
	}
	if len(o.ForwardLoopback) > 0 && !InOtherNetNS(o.HostNetNS) {
		log.Info("not forwarding loopback addresses: this node shares the host's network namespace (or cannot read it)", "hostNetNS", o.HostNetNS)
	} else if len(o.ForwardLoopback) > 0 {
		if err := ForwardLoopback(ctx, o.ForwardLoopback, o.HostNetNS, log.With("component", "forward")); err != nil {
			return err
		}
	}
	rc, err := startContainerd(ctx, o.K2Binary, shim, p)
	if err != nil {
		return err
	}
	defer teardown(rc, p, &o, log)
	log.Info("containerd ready", "socket", p.Socket, "after", time.Since(start).Round(time.Millisecond))
	for _, im := range o.Images {
		if _, err := rc.client.GetImage(namespaces.WithNamespace(ctx, CRINamespace), im.Name); err == nil {
			log.Info("image already present", "image", im.Name)
			continue
		}
		t := time.Now()
		r, err := im.Open(ctx)
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Name, err)
		}
		names, err := importArchive(ctx, rc.client, r, im.Pinned)
		r.Close()
		if err != nil {
			return fmt.Errorf("image %s: %w", im.Name, err)
		}
		log.Info("image imported", "image", im.Name, "names", names, "took", time.Since(t).Round(time.Millisecond))
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "k2-agent/" + o.NodeName
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := ensureDNSAddress(); err != nil {
		return err
	}
	dns, inf := NewDNS(cs, ClusterDomain, Upstreams(o.resolvConf()), log.With("component", "dns"))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := waitSynced(gctx, inf); err != nil {
			return err
		}
		return dns.Serve(gctx, DNSAddress+":53")
	})
	runPodRoutes(gctx, cs, o.NodeName, log.With("component", "routes"))
	g.Go(func() error {
		// kube-proxy's Run does not return when its context ends; its
		// goroutines end with the process.
		errc := make(chan error, 1)
		go func() { errc <- runProxy(gctx, &o, o.Kubeconfig) }()
		select {
		case err := <-errc:
			if err != nil && gctx.Err() == nil {
				return fmt.Errorf("kube-proxy: %w", err)
			}
		case <-gctx.Done():
		}
		return nil
	})
	g.Go(func() error {
		if err := runKubelet(gctx, &o, p, o.Kubeconfig, o.CAFile); err != nil && gctx.Err() == nil {
			return fmt.Errorf("kubelet: %w", err)
		}
		<-gctx.Done()
		return nil
	})
	g.Go(func() error {
		if err := waitNodeReady(gctx, cs, o.NodeName); err != nil {
			return nil // ctx ended
		}
		log.Info("node ready", "runtime", "kubelet", "after", time.Since(start).Round(time.Millisecond))
		// The kubelet and kube-proxy are up: hand back their start-up memory.
		memtrim.After(gctx, log, 10*time.Second, 20*time.Second)
		gc := memtrim.DefaultGCPolicy
		gc.Log = log
		go gc.Run(gctx)
		if o.Ready != nil {
			close(o.Ready)
		}
		return nil
	})
	select {
	case <-rc.done:
		return fmt.Errorf("containerd stopped (%v); see %s", rc.err, p.Log)
	case <-gctx.Done():
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// waitNodeReady polls until the Node reports Ready.
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, name string) error {
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
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

// teardown removes everything the node made: pods (through the CRI, so
// their networks go too), containerd, mounts, cgroups, iptables chains, the
// DNS interface and the run directory.
func teardown(rc *runningContainerd, p containerdPaths, o *Options, log *slog.Logger) {
	t := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := removePods(ctx, p.Socket); err != nil {
		log.Warn("removing pods", "err", err)
	}
	rc.stop()
	removeCgroupRoot(o.cgroupRoot()) // kills shims and containers left behind
	n := unmountUnder(o.DataDir, filepath.Dir(p.Socket), p.Kubelet)
	left := removeCgroupRoot(o.cgroupRoot())
	removeKubeChains()
	removeDNSAddress()
	removeRunDir(p)
	if !strings.HasPrefix(p.Kubelet, o.DataDir) {
		_ = os.RemoveAll(p.Kubelet)
	}
	log.Info("node torn down", "unmounted", n, "cgroupsLeft", len(left), "took", time.Since(t).Round(time.Millisecond))
}
