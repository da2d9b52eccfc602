package agent

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

const leaseNamespace = "kube-node-lease"

// leaseDuration is how long the node's Lease is valid without renewal.
const leaseDuration = 40 * time.Second

// nodeLabels are the labels the node registers with.
func (a *agent) nodeLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname": a.o.NodeName,
		"kubernetes.io/os":       runtime.GOOS,
		"kubernetes.io/arch":     runtime.GOARCH,
		LabelRuntime:             a.o.RuntimeName,
		LabelRole:                a.o.Role,
		LabelPool:                a.o.Role,
	}
	for k, v := range a.o.Labels {
		l[k] = v
	}
	return l
}

func (a *agent) capacity() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    a.o.CPU,
		corev1.ResourceMemory: a.o.Memory,
		corev1.ResourcePods:   *resource.NewQuantity(int64(a.o.MaxPods), resource.DecimalSI),
	}
}

// hostIP is the address other machines reach this one on.
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func (a *agent) conditions(now metav1.Time) []corev1.NodeCondition {
	c := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}
	}
	return []corev1.NodeCondition{
		c(corev1.NodeMemoryPressure, corev1.ConditionFalse, "AgentHasSufficientMemory", "k2 agent has sufficient memory available"),
		c(corev1.NodeDiskPressure, corev1.ConditionFalse, "AgentHasNoDiskPressure", "k2 agent has no disk pressure"),
		c(corev1.NodePIDPressure, corev1.ConditionFalse, "AgentHasSufficientPID", "k2 agent has sufficient PID available"),
		c(corev1.NodeReady, corev1.ConditionTrue, "AgentReady", "k2 agent is posting ready status ("+a.runtimeName()+" runtime)"),
	}
}

func (a *agent) runtimeName() string {
	return a.o.RuntimeName
}

// status is the node status the agent reports.
func (a *agent) status(now metav1.Time) corev1.NodeStatus {
	host, _ := os.Hostname()
	return corev1.NodeStatus{
		Capacity:    a.capacity(),
		Allocatable: a.capacity(),
		Phase:       corev1.NodeRunning,
		Conditions:  a.conditions(now),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: hostIP()},
			{Type: corev1.NodeHostName, Address: host},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.kubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: runtime.GOOS, Architecture: runtime.GOARCH,
			KubeletVersion:          "v1.37.2-k2",
			ContainerRuntimeVersion: a.runtimeName() + "://k2",
			MachineID:               a.o.NodeName,
		},
	}
}

// register creates or updates the Node and sets it Ready.
func (a *agent) register(ctx context.Context) (*corev1.Node, error) {
	var node *corev1.Node
	err := wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		n, err := a.registerOnce(ctx)
		if err != nil {
			a.log.Info("registering node; retrying", "err", err)
			return false, nil
		}
		node = n
		return true, nil
	})
	return node, err
}

func (a *agent) registerOnce(ctx context.Context) (*corev1.Node, error) {
	labels := a.nodeLabels()
	want := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.o.NodeName, Labels: labels}}
	if a.o.RuntimeReason != "" {
		want.Annotations = map[string]string{AnnotationRuntimeReason: a.o.RuntimeReason}
	}
	if a.o.Role == RoleControlPlane {
		want.Labels["node-role.kubernetes.io/control-plane"] = ""
	}
	nodes := a.cs.CoreV1().Nodes()
	node, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if apierrors.IsForbidden(err) && a.o.Role == RoleControlPlane {
		// NodeRestriction forbids nodes from setting node-role labels;
		// k2.dev/role says the same, and the control plane may add it.
		delete(want.Labels, "node-role.kubernetes.io/control-plane")
		node, err = nodes.Create(ctx, want, metav1.CreateOptions{})
	}
	if apierrors.IsAlreadyExists(err) {
		node, err = nodes.Get(ctx, a.o.NodeName, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		changed := false
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			if node.Labels[k] != v {
				node.Labels[k], changed = v, true
			}
		}
		if r := a.o.RuntimeReason; node.Annotations[AnnotationRuntimeReason] != r {
			if node.Annotations == nil {
				node.Annotations = map[string]string{}
			}
			node.Annotations[AnnotationRuntimeReason], changed = r, true
		}
		if changed {
			if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
				return nil, err
			}
		}
	} else if err != nil {
		return nil, err
	}
	node.Status = a.status(metav1.Now())
	node, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting node status: %w", err)
	}
	if err := a.renewLease(ctx); err != nil {
		return nil, err
	}
	// The pod CIDR is allocated by the controller manager shortly after
	// registration; wait a little for it so pod IPs come from it.
	tw := time.Now()
	defer func() { a.log.Debug("pod CIDR wait", "took", time.Since(tw), "podCIDR", node.Spec.PodCIDR) }()
	for i := 0; i < 40 && node.Spec.PodCIDR == ""; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if n, err := nodes.Get(ctx, a.o.NodeName, metav1.GetOptions{}); err == nil {
			node = n
		}
	}
	return node, nil
}

// heartbeat renews the Lease and the Ready condition until ctx ends.
func (a *agent) heartbeat(ctx context.Context) error {
	t := time.NewTicker(a.o.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := a.renewLease(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("renewing node lease", "err", err)
		}
		if err := a.updateStatus(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("updating node status", "err", err)
		}
	}
}

// updateStatus writes the node's status. It reads the Node afresh and
// retries when the write races a change of the Node by someone else (a
// conflict, or NodeRestriction refusing the stale taints or labels the
// update carries), so a heartbeat is not lost to such a race.
func (a *agent) updateStatus(ctx context.Context) error {
	return retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsForbidden(err)
	}, func() error { return a.updateStatusOnce(ctx) })
}

func (a *agent) updateStatusOnce(ctx context.Context) error {
	nodes := a.cs.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.o.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = a.registerOnce(ctx) // deleted under us: register again
		return err
	}
	if err != nil {
		return err
	}
	if cidr := node.Spec.PodCIDR; cidr != "" && cidr != a.podCIDR {
		if u, ok := a.rt.(PodCIDRUpdater); ok {
			if err := u.UpdatePodCIDR(cidr); err != nil {
				return err
			}
			a.log.Info("pod CIDR assigned", "podCIDR", cidr)
		}
		a.podCIDR = cidr
	}
	now := metav1.Now()
	want := a.status(now)
	// Keep transition times of conditions that did not change.
	for i, c := range want.Conditions {
		for _, old := range node.Status.Conditions {
			if old.Type == c.Type && old.Status == c.Status {
				want.Conditions[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
	want.Images, want.VolumesInUse, want.VolumesAttached = node.Status.Images, node.Status.VolumesInUse, node.Status.VolumesAttached
	node.Status = want
	_, err = nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// renewLease creates or renews the node's Lease.
func (a *agent) renewLease(ctx context.Context) error {
	leases := a.cs.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Get(ctx, a.o.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		node, gerr := a.cs.CoreV1().Nodes().Get(ctx, a.o.NodeName, metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: a.o.NodeName, Namespace: leaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(a.o.NodeName),
				LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)),
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity = ptr.To(a.o.NodeName)
	l.Spec.LeaseDurationSeconds = ptr.To(int32(leaseDuration / time.Second))
	l.Spec.RenewTime = &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}
