package agent_test

// Tests against a real control plane (provision/controlplane, in this test
// process) with the real join endpoint in front of it, as `k2 server`
// serves them. Skipped with -short.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/provision/agent"
	"k2.dev/k2/provision/agent/agenttest"
)

type testCluster struct{ *agenttest.Cluster }

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterUsed {
		if c, err := agenttest.Start(); err == nil {
			if err := stopLeavesNothing(c); err != nil {
				fmt.Fprintln(os.Stderr, "FAIL:", err)
				code = 1
			}
			os.RemoveAll(c.Dir)
		}
	}
	os.Exit(code)
}

// stopLeavesNothing stops the control plane once every test's agents have
// stopped (t.Cleanup) and checks that no goroutine of k2's — the server's
// components, the agents' heartbeats, pod workers, kubelet APIs — is left.
func stopLeavesNothing(c *agenttest.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Server.Stop(ctx); err != nil {
		return fmt.Errorf("stopping the control plane: %w", err)
	}
	if left := testutil.WaitNoK2Goroutines(10 * time.Second); len(left) > 0 {
		return fmt.Errorf("%d goroutines of k2 left after the agents and the server stopped:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	return nil
}

var clusterUsed bool

// cluster starts the shared control plane on first use.
func cluster(t testing.TB) *testCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a control plane; skipped with -short")
	}
	clusterUsed = true
	c, err := agenttest.Start()
	if err != nil {
		t.Fatal(err)
	}
	return &testCluster{c}
}

// startAgent runs an agent in this process until the test ends.
func (c *testCluster) startAgent(t *testing.T, name, role string) (stop func() error) {
	t.Helper()
	return c.startAgentTB(t, t.TempDir(), name, role, true)
}

// startAgentTB starts an agent; with wait, it returns once it is ready.
func (c *testCluster) startAgentTB(t testing.TB, dataDir, name, role string, wait bool) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		errc <- agent.Run(ctx, agent.Options{
			ServerURL: c.Server.URL, JoinURL: c.JoinURL, Token: c.Token.String(),
			DataDir: dataDir, NodeName: name, Role: role,
			CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi"),
			HeartbeatInterval: 2 * time.Second, Ready: ready,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: agentLogLevel})),
		})
	}()
	if wait {
		select {
		case <-ready:
		case err := <-errc:
			t.Fatalf("agent %s: %v", name, err)
		case <-time.After(2 * time.Minute):
			t.Fatalf("agent %s not ready after 2m", name)
		}
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(30 * time.Second):
				err = fmt.Errorf("agent %s did not stop within 30s", name)
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func nodeReady(n *corev1.Node) bool { return agenttest.NodeReady(n) }

func poll(t *testing.T, timeout time.Duration, what string, f func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := f(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

func TestAgentsRunDeployment(t *testing.T) {
	c := cluster(t)
	stop1 := c.startAgent(t, "sim-cp-1", agent.RoleControlPlane)
	c.startAgent(t, "sim-w-1", agent.RoleWorker)
	ctx := context.Background()

	for _, name := range []string{"sim-cp-1", "sim-w-1"} {
		n, err := c.Kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !nodeReady(n) || n.Labels[agent.LabelRuntime] != "sim" || n.Status.Capacity.Pods().Value() != 110 || n.Status.Allocatable.Cpu().String() != "2" {
			t.Errorf("node %s: ready=%v labels=%v capacity=%v", name, nodeReady(n), n.Labels, n.Status.Capacity)
		}
		l, err := c.Kube.CoordinationV1().Leases("kube-node-lease").Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) > time.Minute {
			t.Errorf("lease of %s: %v %v", name, l, err)
		}
	}
	if n, _ := c.Kube.CoreV1().Nodes().Get(ctx, "sim-cp-1", metav1.GetOptions{}); n.Labels[agent.LabelRole] != agent.RoleControlPlane {
		t.Errorf("control-plane node labels: %v", n.Labels)
	}

	ns := "agent-test"
	if _, err := c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(4)),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}
	t0 := time.Now()
	if _, err := c.Kube.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 3*time.Minute, "4 available replicas", func(ctx context.Context) (bool, error) {
		d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Status.AvailableReplicas == 4, err
	})
	t.Logf("deployment of 4 replicas available in %s", time.Since(t0).Round(time.Millisecond))
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		n, err := c.Kube.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ip, _ := netip.ParseAddr(p.Status.PodIP)
		if n.Spec.PodCIDR != "" {
			if pfx, err := netip.ParsePrefix(n.Spec.PodCIDR); err != nil || !pfx.Contains(ip) {
				t.Errorf("pod %s IP %s not in node %s pod CIDR %s", p.Name, ip, n.Name, n.Spec.PodCIDR)
			}
		}
		if seen[p.Status.PodIP] {
			t.Errorf("pod IP %s used twice", p.Status.PodIP)
		}
		seen[p.Status.PodIP] = true
		if p.Status.Phase != corev1.PodRunning || p.Status.StartTime == nil || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Running == nil {
			t.Errorf("pod %s status: %+v", p.Name, p.Status)
		}
	}

	// Deleting a pod is finalised by its agent; the ReplicaSet replaces it.
	victim := pods.Items[0]
	if err := c.Kube.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the deleted pod to be gone", func(ctx context.Context) (bool, error) {
		_, err := c.Kube.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})

	// kubectl logs reaches the agent's kubelet API and says why there is
	// nothing to show.
	logs, err := c.Kube.CoreV1().Pods(ns).GetLogs(pods.Items[1].Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil || !strings.Contains(string(logs), "k2 sim runtime: pod "+ns+"/"+pods.Items[1].Name+" runs no containers") {
		t.Errorf("pod logs: %q %v", logs, err)
	}

	// Scale to zero: every pod finalised.
	if _, err := c.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, "web", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 0}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "no pods left", func(ctx context.Context) (bool, error) {
		l, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})

	// A Job completes on sim nodes.
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "once", Namespace: ns},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "work", Image: "busybox:1.36"}},
		}}},
	}
	if _, err := c.Kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "the Job to succeed", func(ctx context.Context) (bool, error) {
		j, err := c.Kube.BatchV1().Jobs(ns).Get(ctx, "once", metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1, err
	})

	// A clean stop.
	if err := stop1(); err != nil {
		t.Errorf("stopping agent: %v", err)
	}
}

var agentLogLevel = func() slog.Level {
	if os.Getenv("K2_TEST_VERBOSE") != "" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}()

// TestAgentAutoFallsBackToSim: with --runtime auto on a machine that cannot
// run real pods (here: no runc shim beside the given k2 binary), the agent
// registers a sim node and says why in the node's annotation; with
// --runtime kubelet it refuses, naming what is missing.
func TestAgentAutoFallsBackToSim(t *testing.T) {
	c := cluster(t)
	fakeK2 := filepath.Join(t.TempDir(), "k2") // no containerd-shim-runc-v2 beside it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- agent.Run(ctx, agent.Options{
			ServerURL: c.Server.URL, JoinURL: c.JoinURL, Token: c.Token.String(),
			DataDir: t.TempDir(), NodeName: "auto-1", RuntimeName: agent.RuntimeAuto, K2Binary: fakeK2,
			NodeIP: "192.0.2.10", Ready: ready,
		})
	}()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("agent: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("agent not ready after 1m")
	}
	n, err := c.Kube.CoreV1().Nodes().Get(ctx, "auto-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reason := n.Annotations[agent.AnnotationRuntimeReason]
	if n.Labels[agent.LabelRuntime] != agent.RuntimeSim || !strings.Contains(reason, "containerd-shim-runc-v2") {
		t.Errorf("node runtime %q, reason %q; want sim because the shim is missing", n.Labels[agent.LabelRuntime], reason)
	}

	err = agent.Run(ctx, agent.Options{
		ServerURL: c.Server.URL, JoinURL: c.JoinURL, Token: c.Token.String(),
		DataDir: t.TempDir(), NodeName: "kubelet-1", RuntimeName: agent.RuntimeKubelet, K2Binary: fakeK2, NodeIP: "192.0.2.11",
	})
	if err == nil || !strings.Contains(err.Error(), "containerd-shim-runc-v2 not found") {
		t.Errorf("--runtime kubelet without a shim: %v", err)
	}
}
