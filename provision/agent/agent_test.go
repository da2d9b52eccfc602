package agent_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"k2.dev/k2/provision/agent"
)

func pod(uid string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p-" + uid, Namespace: "default", UID: types.UID(uid)}}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "nginx:1.27"})
	}
	p.Status.Phase = corev1.PodPending
	return p
}

func TestSimRuntimeIPs(t *testing.T) {
	ctx := context.Background()
	rt, err := agent.NewSimRuntime("10.244.3.0/30", "n1") // .0 network, .1 gateway, .2 pod, .3 broadcast
	if err != nil {
		t.Fatal(err)
	}
	a, err := rt.RunPod(ctx, pod("a", "web"))
	if err != nil || a.IP != "10.244.3.2" {
		t.Fatalf("first pod: %+v %v", a, err)
	}
	again, _ := rt.RunPod(ctx, pod("a", "web"))
	if again.IP != a.IP {
		t.Errorf("RunPod is not idempotent: %s then %s", a.IP, again.IP)
	}
	if _, err := rt.RunPod(ctx, pod("b", "web")); err == nil {
		t.Error("a /30 holds one pod; the second must fail")
	}
	rt.StopPod(ctx, "a")
	if b, err := rt.RunPod(ctx, pod("b", "web")); err != nil || b.IP != "10.244.3.2" {
		t.Errorf("IP not reused after StopPod: %+v %v", b, err)
	}
	// A pod that already has an IP in range keeps it (agent restart).
	rt2, _ := agent.NewSimRuntime("10.244.3.0/24", "n1")
	p := pod("c", "web")
	p.Status.PodIP = "10.244.3.77"
	if c, _ := rt2.RunPod(ctx, p); c.IP != "10.244.3.77" {
		t.Errorf("pod IP not kept: %s", c.IP)
	}
	// Without a pod CIDR the range is derived from the node name.
	d1, _ := agent.NewSimRuntime("", "node-a")
	d2, _ := agent.NewSimRuntime("", "node-a")
	x, _ := d1.RunPod(ctx, pod("x", "c"))
	y, _ := d2.RunPod(ctx, pod("x", "c"))
	if x.IP != y.IP || x.IP[:6] != "10.90." {
		t.Errorf("derived ranges: %s %s", x.IP, y.IP)
	}
}

func condStatus(st corev1.PodStatus) map[corev1.PodConditionType]corev1.ConditionStatus {
	m := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range st.Conditions {
		m[c.Type] = c.Status
	}
	return m
}

func TestStatusTransitions(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	p := pod("u1", "web", "sidecar")
	pending := agent.PendingStatus(p, "192.0.2.10", now)
	if pending.Phase != corev1.PodPending || pending.StartTime == nil || pending.ContainerStatuses[0].State.Waiting == nil {
		t.Errorf("pending status: %+v", pending)
	}
	if diff := cmp.Diff(map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodScheduled: "True", corev1.PodInitialized: "True", corev1.ContainersReady: "False", corev1.PodReady: "False",
	}, condStatus(pending)); diff != "" {
		t.Errorf("pending conditions (-want +got):\n%s", diff)
	}
	p.Status = pending
	rt, _ := agent.NewSimRuntime("10.1.0.0/24", "n")
	rs, _ := rt.RunPod(context.Background(), p)
	running := agent.RunningStatus(p, rs, "192.0.2.10", metav1.NewTime(now.Add(time.Second)))
	if running.Phase != corev1.PodRunning || running.PodIP != "10.1.0.2" || running.HostIP != "192.0.2.10" {
		t.Errorf("running status: phase %s podIP %s hostIP %s", running.Phase, running.PodIP, running.HostIP)
	}
	if !running.StartTime.Equal(pending.StartTime) {
		t.Error("startTime changed between Pending and Running")
	}
	for _, c := range running.ContainerStatuses {
		if !c.Ready || c.State.Running == nil || c.ContainerID == "" {
			t.Errorf("container %s: %+v", c.Name, c)
		}
	}
	if diff := cmp.Diff(map[corev1.PodConditionType]corev1.ConditionStatus{
		corev1.PodScheduled: "True", corev1.PodInitialized: "True", corev1.ContainersReady: "True", corev1.PodReady: "True",
	}, condStatus(running)); diff != "" {
		t.Errorf("running conditions (-want +got):\n%s", diff)
	}
}

func TestSimJobsComplete(t *testing.T) {
	rt, _ := agent.NewSimRuntime("10.1.0.0/24", "n")
	rt.JobDuration = 50 * time.Millisecond
	p := pod("job", "work")
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	rs, err := rt.RunPod(context.Background(), p)
	if err != nil || rs.Recheck <= 0 || !rs.Containers[0].Running {
		t.Fatalf("first RunPod: %+v %v", rs, err)
	}
	p.Status = agent.RunningStatus(p, rs, "192.0.2.1", metav1.Now())
	if p.Status.Phase != corev1.PodRunning {
		t.Fatalf("phase %s", p.Status.Phase)
	}
	time.Sleep(rs.Recheck)
	rs, _ = rt.RunPod(context.Background(), p)
	st := agent.RunningStatus(p, rs, "192.0.2.1", metav1.Now())
	term := st.ContainerStatuses[0].State.Terminated
	if st.Phase != corev1.PodSucceeded || term == nil || term.ExitCode != 0 || term.Reason != "Completed" || rs.Recheck != 0 {
		t.Errorf("after JobDuration: phase %s, container %+v, recheck %s", st.Phase, st.ContainerStatuses[0].State, rs.Recheck)
	}
	if condStatus(st)[corev1.PodReady] != "False" {
		t.Errorf("a completed pod is not Ready: %v", st.Conditions)
	}
	// A Deployment's pod (restartPolicy Always) never exits.
	web := pod("web", "c")
	web.Spec.RestartPolicy = corev1.RestartPolicyAlways
	if rs, _ := rt.RunPod(context.Background(), web); rs.Recheck != 0 || !rs.Containers[0].Running {
		t.Errorf("web pod: %+v", rs)
	}
}

func TestHostNetworkPodUsesHostIP(t *testing.T) {
	rt, _ := agent.NewSimRuntime("10.1.0.0/30", "n")
	p := pod("hn", "c")
	p.Spec.HostNetwork = true
	rs, err := rt.RunPod(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if st := agent.RunningStatus(p, rs, "192.0.2.7", metav1.Now()); st.PodIP != "192.0.2.7" {
		t.Errorf("hostNetwork pod IP %q", st.PodIP)
	}
	// It took no address from the range: the one pod IP of a /30 is free.
	if rs, err := rt.RunPod(context.Background(), pod("other", "c")); err != nil || rs.IP != "10.1.0.2" {
		t.Errorf("other pod: %+v %v", rs, err)
	}
}
