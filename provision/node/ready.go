package node

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// nodeReady is the component that is ready once the Node reports Ready:
// the node's start ends there.
type nodeReady struct{ n *node }

func (*nodeReady) Name() string                { return "node-ready" }
func (*nodeReady) Init(context.Context) error  { return nil }
func (*nodeReady) Start(context.Context) error { return nil }
func (*nodeReady) Stop(context.Context) error  { return nil }

func (r *nodeReady) Ready(ctx context.Context) error {
	if err := waitNodeReady(ctx, r.n.cs, r.n.o.NodeName); err != nil {
		return err
	}
	r.n.log.Info("node ready", "runtime", "kubelet", "after", time.Since(r.n.start).Round(time.Millisecond))
	return nil
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
