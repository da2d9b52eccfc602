package cluster

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, ready corev1.ConditionStatus, reason, msg string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: reason, Message: msg}}
	}
	return n
}

// TestNodesNotReady: the node wait's progress names each machine without a
// Ready node and why.
func TestNodesNotReady(t *testing.T) {
	want := []string{"dev-worker-0", "dev-worker-1", "dev-worker-2"}
	tests := []struct {
		name     string
		nodes    []corev1.Node
		ready    int
		notReady []string
	}{
		{name: "none yet", ready: 0, notReady: []string{
			"dev-worker-0: no node yet (its agent has not joined)",
			"dev-worker-1: no node yet (its agent has not joined)",
			"dev-worker-2: no node yet (its agent has not joined)",
		}},
		{name: "mixed", nodes: []corev1.Node{
			node("dev-worker-0", corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"),
			node("dev-worker-1", corev1.ConditionFalse, "KubeletNotReady", "container runtime network not ready: NetworkReady=false"),
			node("dev-worker-2", "", "", ""),
		}, ready: 1, notReady: []string{
			"dev-worker-1: NotReady: KubeletNotReady: container runtime network not ready: NetworkReady=false",
			"dev-worker-2: registered, no status yet",
		}},
		{name: "lost", nodes: []corev1.Node{
			node("dev-worker-0", corev1.ConditionTrue, "", ""),
			node("dev-worker-1", corev1.ConditionTrue, "", ""),
			node("dev-worker-2", corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."),
		}, ready: 2, notReady: []string{"dev-worker-2: status unknown: NodeStatusUnknown: Kubelet stopped posting node status."}},
		{name: "other names", nodes: []corev1.Node{
			node("ip-10-0-1-5", corev1.ConditionTrue, "", ""),
		}, ready: 1, notReady: []string{"2 machines have no node yet (their agents have not joined)"}},
		{name: "all", nodes: []corev1.Node{
			node("dev-worker-0", corev1.ConditionTrue, "", ""),
			node("dev-worker-1", corev1.ConditionTrue, "", ""),
			node("dev-worker-2", corev1.ConditionTrue, "", ""),
		}, ready: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, why := nodesNotReady(want, tt.nodes)
			if ready != tt.ready {
				t.Errorf("ready = %d, want %d", ready, tt.ready)
			}
			if diff := cmp.Diff(tt.notReady, why); diff != "" {
				t.Errorf("why (-want +got):\n%s", diff)
			}
		})
	}
}

// TestReadyzWhy: a starting apiserver's /readyz?verbose in one line.
func TestReadyzWhy(t *testing.T) {
	body := "[+]ping ok\n[+]log ok\n[-]etcd failed: reason withheld\n[+]informer-sync ok\n" +
		"[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed\n"
	tests := []struct{ body, want string }{
		{body, "starting (500 Internal Server Error), waiting for etcd, poststarthook/rbac/bootstrap-roles"},
		{"", "starting (500 Internal Server Error)"},
		{"[-]etcd failed\n[-]informer-sync failed\n[-]autoregister-completion failed\n[-]poststarthook/k2/bootstrap-roles failed\n[-]poststarthook/rbac/bootstrap-roles failed\n",
			"starting (500 Internal Server Error), waiting for etcd, informer-sync, autoregister-completion and 2 more checks"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, readyzWhy("500 Internal Server Error", tt.body)); diff != "" {
			t.Errorf("readyzWhy (-want +got):\n%s", diff)
		}
	}
}

// TestDialWhy: the control plane's line does not change with each try's
// wording of the same failure.
func TestDialWhy(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	hc := &http.Client{Timeout: 2 * time.Second}
	_, err = hc.Get("http://" + addr + "/readyz")
	if got := dialWhy(err); got != "connection refused" {
		t.Errorf("dialWhy(%v) = %q", err, got)
	}
	// A listener that never answers: the client's timeout.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hc.Timeout = 100 * time.Millisecond
	_, err = hc.Get("http://" + ln.Addr().String() + "/readyz")
	if got := dialWhy(err); got != "no answer in time" {
		t.Errorf("dialWhy(%v) = %q", err, got)
	}
}
