package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// SimRuntime is the "sim" runtime: pods get an IP and report their
// containers running, but no process runs. It is for the local provider
// and scale tests. Pods that do not restart (restartPolicy Never or
// OnFailure: Jobs, Helm hooks) run for JobDuration and then exit 0, so Jobs
// complete. Not modelled: failures, restarts, probes, resource limits,
// volumes, logs and exec, networking (IPs are not routable).
type SimRuntime struct {
	mu      sync.Mutex
	prefix  netip.Prefix
	byUID   map[types.UID]*simPod
	usedIPs map[netip.Addr]bool
	// StartDelay is how long "starting" a pod takes (default 0).
	StartDelay time.Duration
	// JobDuration is how long a pod that does not restart runs before its
	// containers exit 0 (default DefaultJobDuration).
	JobDuration time.Duration
}

// DefaultJobDuration is how long sim Jobs run.
const DefaultJobDuration = time.Second

type simPod struct {
	ip      netip.Addr
	started time.Time
}

var (
	_ Runtime        = (*SimRuntime)(nil)
	_ PodCIDRUpdater = (*SimRuntime)(nil)
)

// NewSimRuntime allocates pod IPs from cidr, or from a 10.90.x.0/24 range
// derived from the node name when cidr is empty.
func NewSimRuntime(cidr, nodeName string) (*SimRuntime, error) {
	if cidr == "" {
		h := fnv.New32a()
		h.Write([]byte(nodeName))
		cidr = fmt.Sprintf("10.90.%d.0/24", h.Sum32()%256)
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("parsing pod CIDR %q: %w", cidr, err)
	}
	p = p.Masked()
	return &SimRuntime{prefix: p, byUID: map[types.UID]*simPod{}, usedIPs: map[netip.Addr]bool{}}, nil
}

// SimRuntimeFactory makes a SimRuntime from the node's spec.podCIDR.
func SimRuntimeFactory(node *corev1.Node) (Runtime, error) {
	return NewSimRuntime(node.Spec.PodCIDR, node.Name)
}

// UpdatePodCIDR implements PodCIDRUpdater: new pods get IPs from cidr;
// running pods keep theirs.
func (r *SimRuntime) UpdatePodCIDR(cidr string) error {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("parsing pod CIDR %q: %w", cidr, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prefix = p.Masked()
	return nil
}

// Name implements Runtime.
func (r *SimRuntime) Name() string { return "sim" }

// allocate returns the lowest free IP of the range, skipping the network
// address, the first address (the gateway) and the broadcast address.
func (r *SimRuntime) allocate() (netip.Addr, error) {
	for ip := r.prefix.Addr().Next().Next(); r.prefix.Contains(ip.Next()); ip = ip.Next() {
		if !r.usedIPs[ip] {
			r.usedIPs[ip] = true
			return ip, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s is exhausted", r.prefix)
}

// RunPod implements Runtime.
func (r *SimRuntime) RunPod(ctx context.Context, pod *corev1.Pod) (*PodStatus, error) {
	r.mu.Lock()
	p, ok := r.byUID[pod.UID]
	if !ok {
		// Keep the IP the pod already has (after an agent restart).
		if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && r.prefix.Contains(ip) && !r.usedIPs[ip] {
			r.usedIPs[ip] = true
			p = &simPod{ip: ip, started: time.Now()}
			r.byUID[pod.UID] = p
		}
	}
	if p == nil && pod.Spec.HostNetwork {
		p = &simPod{started: time.Now()} // shares the node's address
		r.byUID[pod.UID] = p
	}
	if p == nil {
		ip, err := r.allocate()
		if err != nil {
			r.mu.Unlock()
			return nil, err
		}
		p = &simPod{ip: ip, started: time.Now()}
		r.byUID[pod.UID] = p
	}
	r.mu.Unlock()
	if !ok && r.StartDelay > 0 {
		select {
		case <-time.After(r.StartDelay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	st := &PodStatus{}
	if p.ip.IsValid() {
		st.IP = p.ip.String()
	}
	exited := false
	d := r.JobDuration
	if d == 0 {
		d = DefaultJobDuration
	}
	if pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure {
		if left := time.Until(p.started.Add(d)); left > 0 {
			st.Recheck = left
		} else {
			exited = true
		}
	}
	for i, c := range pod.Spec.Containers {
		cs := ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: "sim://" + c.Image,
			ContainerID: fmt.Sprintf("sim://%s-%d", pod.UID, i), Running: !exited, StartedAt: p.started,
		}
		if exited {
			cs.Exited, cs.FinishedAt = true, p.started.Add(d)
		}
		st.Containers = append(st.Containers, cs)
	}
	return st, nil
}

// StopPod implements Runtime.
func (r *SimRuntime) StopPod(_ context.Context, uid types.UID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.byUID[uid]; ok {
		if p.ip.IsValid() {
			delete(r.usedIPs, p.ip)
		}
		delete(r.byUID, uid)
	}
	return nil
}

// Running returns how many pods the runtime runs.
func (r *SimRuntime) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byUID)
}
