package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Runtime runs the pods bound to this node. The agent owns the API side
// (watching pods, writing status, finalising deletions); a Runtime only
// makes pods exist or not on the machine. Implementations: the "sim"
// runtime (no containers) now; the kubelet + containerd runtime later.
type Runtime interface {
	// Name is the value of the node's k2.dev/runtime label.
	Name() string
	// RunPod makes the pod's sandbox and containers run, or confirms they
	// are running, and reports what it observed. It is called again for
	// every change of the pod, so it must be idempotent.
	RunPod(ctx context.Context, pod *corev1.Pod) (*PodStatus, error)
	// StopPod stops and removes everything of the pod; stopping a pod the
	// runtime does not know is not an error.
	StopPod(ctx context.Context, uid types.UID) error
}

// PodStatus is what a runtime observed of a pod.
type PodStatus struct {
	IP         string
	Containers []ContainerStatus
	// Recheck asks the agent to call RunPod again after this long (for a
	// change the runtime expects, such as a container finishing); 0: only
	// on the pod's next change.
	Recheck time.Duration
}

// ContainerStatus is one container as the runtime sees it.
type ContainerStatus struct {
	Name         string
	Image        string
	ImageID      string
	ContainerID  string
	Running      bool
	StartedAt    time.Time
	RestartCount int32
	// Exited containers have finished with ExitCode at FinishedAt.
	Exited     bool
	ExitCode   int32
	FinishedAt time.Time
}

// PodCIDRUpdater is implemented by runtimes that allocate pod IPs from the
// node's pod CIDR; the agent calls it when the control plane assigns or
// changes spec.podCIDR after the runtime was made.
type PodCIDRUpdater interface {
	UpdatePodCIDR(cidr string) error
}

// RuntimeFactory makes a runtime once the node is registered (it may need
// the node's pod CIDR).
type RuntimeFactory func(node *corev1.Node) (Runtime, error)

// Runtimes are the runtimes an agent can use, by name.
var Runtimes = map[string]RuntimeFactory{
	"sim": SimRuntimeFactory,
}
