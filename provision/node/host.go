package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// host is the component that stands for the node's footprint on the host.
// Init makes the node's cgroup root (/k2/<node>). Stop, the last to run
// (containerd has stopped by then), removes what the node leaves behind:
// shims and containers still in its cgroups, mounts under its directories,
// its cgroups, the kubelet's and kube-proxy's iptables chains, its run
// directory and a kubelet directory outside the data dir.
type host struct{ n *node }

func (*host) Name() string { return "host" }

func (h *host) Init(context.Context) error {
	root := h.n.o.cgroupRoot()
	if err := ensureCgroupRoot(root); err != nil {
		return fmt.Errorf("creating the node's cgroup root %s: %w", root, err)
	}
	return nil
}

func (*host) Start(context.Context) error { return nil }

func (h *host) Stop(context.Context) error {
	t := time.Now()
	o, p := h.n.o, h.n.paths
	removeCgroupRoot(o.cgroupRoot()) // kills shims and containers left behind
	n := unmountUnder(o.DataDir, filepath.Dir(p.Socket), p.Kubelet)
	left := removeCgroupRoot(o.cgroupRoot())
	removeKubeChains()
	removeRunDir(p)
	if !strings.HasPrefix(p.Kubelet, o.DataDir) {
		_ = os.RemoveAll(p.Kubelet)
	}
	h.n.log.Info("node torn down", "unmounted", n, "cgroupsLeft", len(left), "after", time.Since(h.n.start).Round(time.Millisecond), "took", time.Since(t).Round(time.Millisecond))
	return nil
}
