package agent_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"k2.dev/k2/provision/agent"
)

// BenchmarkSimScale brings 10 sim agents (in this process) to Ready and
// runs a 100-replica Deployment on them, reporting both times.
func BenchmarkSimScale(b *testing.B) {
	const nodes, replicas = 10, 100
	var readyTotal, podsTotal time.Duration
	n := 0
	for b.Loop() {
		c := cluster(b)
		ctx := context.Background()
		ns := fmt.Sprintf("scale-%d", n)
		t0 := time.Now()
		var stops []func() error
		for i := range nodes {
			stops = append(stops, c.startAgentTB(b, b.TempDir(), fmt.Sprintf("scale-%d-%d", n, i), agent.RoleWorker, false))
		}
		for {
			l, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			ready := 0
			for _, node := range l.Items {
				if strings.HasPrefix(node.Name, fmt.Sprintf("scale-%d-", n)) && nodeReady(&node) {
					ready++
				}
			}
			if err == nil && ready == nodes {
				break
			}
			if time.Since(t0) > 5*time.Minute {
				b.Fatalf("%d of %d nodes Ready after 5m", ready, nodes)
			}
			time.Sleep(50 * time.Millisecond)
		}
		readyTotal += time.Since(t0)
		c.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		labels := map[string]string{"app": "scale"}
		t1 := time.Now()
		_, err := c.Kube.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "scale", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To(int32(replicas)), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1.27"}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, "scale", metav1.GetOptions{})
			if err == nil && d.Status.AvailableReplicas == replicas {
				break
			}
			if time.Since(t1) > 5*time.Minute {
				b.Fatalf("deployment not available after 5m: %+v", d.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		podsTotal += time.Since(t1)
		b.StopTimer()
		c.Kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		for i, stop := range stops {
			stop()
			// As a deploy does when it removes machines: otherwise the next
			// round's pods are scheduled to nodes without an agent.
			c.Kube.CoreV1().Nodes().Delete(ctx, fmt.Sprintf("scale-%d-%d", n, i), metav1.DeleteOptions{})
		}
		n++
		b.StartTimer()
	}
	b.ReportMetric(readyTotal.Seconds()/float64(n), "s/10-nodes-ready")
	b.ReportMetric(podsTotal.Seconds()/float64(n), "s/100-pods-available")
}
