package apply

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// What Wait does not wait out: the verdict on each pod problem.

// stuck returns a *StuckError for the first pod problem that will not go
// away by waiting (see Wait), or nil.
func (w *waiter) stuck(ctx context.Context, pods map[int]*objectPods) error {
	now := time.Now()
	idx := make([]int, 0, len(pods))
	for i := range pods {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		op := pods[i]
		for _, p := range op.problems {
			if reason, hint := w.verdict(ctx, p, op.pods[p.Pod], now); hint != "" {
				e := &StuckError{Object: w.result.Objects[i].Object, Pod: p.Pod, Node: p.Node, Container: p.Container,
					Image: p.Image, Reason: p.Reason, Message: p.Message, Restarts: p.Restarts, LastExit: p.LastExit,
					For: now.Sub(w.firstSeen(p, now)).Round(time.Second), Detail: reason, Hint: hint}
				if p.crashing(defaultCrashRestarts) {
					e.Reason = ReasonCrashLoopBackOff // what the kubelet calls a container it backs off restarting
					e.Logs = lastLogLines(ctx, w.cl, p.Namespace, p.Pod, p.Container, p.Terminated, defaultLogLines)
				}
				r := &w.result.Objects[i]
				f := false
				r.Ready, r.Status = &f, e.Reason+": "+brief(e.Message)
				return e
			}
		}
	}
	return nil
}

// class groups waiting reasons that are one problem over time (a failed
// pull and its back-off).
func class(reason string) string {
	switch reason {
	case ReasonErrImagePull, ReasonImagePullBackOff:
		return "pull"
	}
	return reason
}

func (w *waiter) firstSeen(p *podProblem, now time.Time) time.Time {
	key := p.UID + "/" + p.Container + "/" + class(p.Reason)
	t, ok := w.since[key]
	if !ok {
		w.since[key] = now
		t = now
	}
	return t
}

// verdict decides whether p will not fix itself; if so it returns a detail
// for the message (may be empty) and the hint of what to do.
func (w *waiter) verdict(ctx context.Context, p *podProblem, pod *corev1.Pod, now time.Time) (detail, hint string) {
	since := now.Sub(w.firstSeen(p, now))
	switch p.Reason {
	case ReasonInvalidImageName:
		return "", "fix the image reference: the K8sfile's APP image=, or the chart value that sets it (a values change: --set)"
	case ReasonErrImageNeverPull:
		return "", "the pod's imagePullPolicy is Never and the node does not have the image: carry the images in the artifact with 'k2 build --vendor-images', or set imagePullPolicy to IfNotPresent"
	case ReasonCreateConfigError:
		if since < defaultConfigErrorGrace {
			return "", ""
		}
		return "", "create what the message names (a Secret or ConfigMap, or its key), or fix the reference in the chart's values"
	case ReasonErrImagePull, ReasonImagePullBackOff:
		if since < w.opts.PullGrace {
			return "", ""
		}
		return "", pullHint(p.Image)
	}
	if p.crashing(defaultCrashRestarts) {
		return "", fmt.Sprintf("the container exits soon after it starts (its log: kubectl logs --previous %s -c %s); fix the image, or its configuration (a values change: --set, or the chart's values)", p.Pod, p.Container)
	}
	switch p.Reason {
	case ReasonUnschedulable:
		if pod == nil {
			return "", ""
		}
		missing := missingResource(pod, w.readyNodes(ctx, now))
		if missing == "" {
			return "", ""
		}
		return missing, "give a MACHINES pool machines that have it (cpu=, memory=, or nodes with that device), or lower the pod's request in the values"
	}
	return "", ""
}

// pullHint says what to do about an image the nodes cannot pull.
func pullHint(image string) string {
	hint := ""
	if host, silent := loopbackSilent(image); silent {
		hint = fmt.Sprintf("nothing listens on %s on this machine: start the registry and push %s there; ", host, image)
	} else if reg := imageRegistry(image); reg != "" {
		hint = fmt.Sprintf("push %s to %s (or fix the reference: a values change); ", image, reg)
	}
	return hint + "if the registry needs a login, give the pods a registry credential (an imagePullSecret); for sites without registry access, carry the images in the artifact with 'k2 build --vendor-images'"
}

// readyNodes lists the nodes that are Ready (at most every 5 s).
func (w *waiter) readyNodes(ctx context.Context, now time.Time) []corev1.Node {
	if now.Sub(w.nodesAt) < 5*time.Second && w.nodes != nil {
		return w.nodes
	}
	list, err := w.cl.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	w.nodes, w.nodesAt = w.nodes[:0], now
	for _, n := range list.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				w.nodes = append(w.nodes, n)
			}
		}
	}
	return w.nodes
}
