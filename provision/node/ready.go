package node

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	if err := waitNodeReady(ctx, r.n.cs, r.n.o.NodeName, r.n.log); err != nil {
		return err
	}
	r.n.log.Info("node ready", "runtime", "kubelet", "after", time.Since(r.n.start).Round(time.Millisecond))
	return nil
}

// notReadyLogInterval is how often waitNodeReady says what it still waits
// for: the agent's log then shows a node that never came, and why.
const notReadyLogInterval = 30 * time.Second

// waitNodeReady polls until the Node reports Ready, logging every
// notReadyLogInterval what it sees instead.
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, name string, log *slog.Logger) error {
	start, logged := time.Now(), time.Now()
	for {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		why := ""
		switch {
		case apierrors.IsNotFound(err):
			why = "the kubelet has not registered the node yet (logs/kubelet.log says why)"
		case err != nil:
			why = "reading the node: " + err.Error()
		default:
			why = "the node has no Ready condition yet"
			for _, c := range n.Status.Conditions {
				if c.Type != corev1.NodeReady {
					continue
				}
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				why = fmt.Sprintf("the node is not Ready: %s: %s", c.Reason, c.Message)
			}
		}
		if time.Since(logged) >= notReadyLogInterval {
			logged = time.Now()
			log.Warn("waiting for the node to be Ready", "after", time.Since(start).Round(time.Second), "why", why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
