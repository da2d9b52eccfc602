package integration

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"k2.dev/k2/provision/apply"
)

// waitNodeTaint keeps other tests' pods off the node these tests register.
const waitNodeTaint = "k2.dev/test-wait"

// registerNode creates a Ready Node with 2 CPUs and 4Gi (no kubelet behind
// it: the scheduler only reads the object), tainted so that only pods that
// tolerate waitNodeTaint go there, and deletes it when the test ends.
func registerNode(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: waitNodeTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}},
	}
	n, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	res := corev1.ResourceList{"cpu": resource.MustParse("2"), "memory": resource.MustParse("4Gi"), "pods": resource.MustParse("110")}
	if err := setNodeReady(ctx, n.Name, res); err != nil {
		t.Fatal(err)
	}
}

// setNodeReady gives a registered Node the status a kubelet would post:
// Ready, with capacity res when not nil. The control plane's controllers
// change a new Node at once (taints, annotations), so a conflict is retried
// on the Node as it is now.
func setNodeReady(ctx context.Context, name string, res corev1.ResourceList) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if res != nil {
			n.Status.Capacity, n.Status.Allocatable = res, res
		}
		n.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		_, err = kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// workload is a Deployment of one pod that tolerates the test node's taint,
// with the given container resources block and pod spec extras.
func workload(name, resources, extra string) string {
	return `
kind: Deployment
metadata: {name: ` + name + `}
spec:
  selector: {matchLabels: {app: ` + name + `}}
  template:
    metadata: {labels: {app: ` + name + `}}
    spec:
      tolerations: [{key: ` + waitNodeTaint + `, operator: Exists}]
      ` + extra + `
      containers: [{name: c, image: "127.0.0.1:5999/wait:1.0", resources: ` + resources + `}]
`
}

// TestWaitFailsOnMissingResource: a pod that needs a resource no node has
// (or more memory than any node has) fails the wait at once with a
// StuckError naming the pod and the resource, and the progress line says
// why while waiting; a pod that is unschedulable for another reason (a node
// selector nothing matches) is waited for until the timeout.
func TestWaitFailsOnMissingResource(t *testing.T) {
	ns := namespace(t, "wait-resources")
	registerNode(t, "wait-node-0")
	tests := []struct {
		name, resources, extra string
		detail                 string // "" means: not stuck, times out
	}{
		{"gpu", `{requests: {example.com/gpu: "1"}, limits: {example.com/gpu: "1"}}`, "",
			"it requests 1 example.com/gpu and no node has example.com/gpu"},
		{"big", `{requests: {memory: 64Gi}}`, "", "it requests 64Gi memory and the largest node has 4Gi allocatable"},
		{"elsewhere", `{requests: {memory: 1Gi}}`, `nodeSelector: {k2.dev/pool: nowhere}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := apply.Decode(strings.NewReader(workload(tt.name, tt.resources, tt.extra)), tt.name+".yaml")
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var lines []string
			start := time.Now()
			_, err = apply.Apply(context.Background(), restCfg, objs, apply.Options{Namespace: ns, Wait: true, Timeout: 8 * time.Second,
				Progress: func(p apply.WaitProgress) { mu.Lock(); lines = append(lines, p.Line); mu.Unlock() }})
			took := time.Since(start)
			var se *apply.StuckError
			if tt.detail == "" {
				if !errors.Is(err, apply.ErrNotReady) || errors.As(err, &se) {
					t.Fatalf("Apply = %v, want a timeout (NotReadyError)", err)
				}
				if !strings.Contains(err.Error(), "Unschedulable") {
					t.Errorf("timeout report lacks the pod's reason:\n%v", err)
				}
				return
			}
			if !errors.As(err, &se) || !errors.Is(err, apply.ErrStuck) {
				t.Fatalf("Apply = %v, want a StuckError", err)
			}
			if se.Reason != apply.ReasonUnschedulable || se.Detail != tt.detail || !strings.HasPrefix(se.Pod, tt.name+"-") ||
				se.Object.Kind != "Deployment" || se.Object.Name != tt.name || se.Hint == "" {
				t.Errorf("StuckError = %+v", se)
			}
			if took > 6*time.Second {
				t.Errorf("failed after %s; want it at once", took)
			}
			mu.Lock()
			defer mu.Unlock()
			if !strings.Contains(strings.Join(lines, "\n"), "Deployment "+ns+"/"+tt.name+": 0/1 pods ready; pod "+tt.name+"-") {
				t.Errorf("progress lines lack the object and pod:\n%s", strings.Join(lines, "\n"))
			}
			t.Logf("%s: %v", took.Round(time.Millisecond), err)
		})
	}
}

// TestWaitObjects: Wait watches objects it did not apply (a chart
// release's), resolving their namespace, and reports kinds it cannot
// resolve as not checked rather than failing.
func TestWaitObjects(t *testing.T) {
	ns := namespace(t, "wait-objects")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: ns}}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := apply.Wait(context.Background(), restCfg, []apply.ObjectRef{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "c"},
		{APIVersion: "example.com/v1", Kind: "Gadget", Name: "g"},
	}, apply.WaitOptions{Namespace: ns, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if got := res.Objects[0]; got.Object.Namespace != ns || got.Ready == nil || !*got.Ready {
		t.Errorf("ConfigMap: %+v", got)
	}
	if got := res.Objects[1]; got.Ready == nil || !*got.Ready || !strings.HasPrefix(got.Status, "not checked") {
		t.Errorf("Gadget: %+v", got)
	}
}
