package apply

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"k2.dev/k2/provision/app"
)

// Waiting reasons the kubelet and the scheduler report that the readiness
// engine acts on.
const (
	ReasonErrImagePull       = "ErrImagePull"
	ReasonImagePullBackOff   = "ImagePullBackOff"
	ReasonInvalidImageName   = "InvalidImageName"
	ReasonErrImageNeverPull  = "ErrImageNeverPull"
	ReasonCreateConfigError  = "CreateContainerConfigError"
	ReasonCrashLoopBackOff   = "CrashLoopBackOff"
	ReasonUnschedulable      = "Unschedulable"
	reasonContainerCreating  = "ContainerCreating"
	reasonPodInitializing    = "PodInitializing"
	reasonNotReady           = "NotReady"
	reasonPending            = "Pending"
	reasonFailed             = "Failed"
	defaultCrashRestarts     = 3
	defaultConfigErrorGrace  = 15 * time.Second
	defaultLogLines          = 5
	maxLogLineLength         = 300
	podProblemMessageMaxSize = 400
)

// podSelector returns the selector of the pods that make a workload
// ready, or nil for objects without pods of their own.
func podSelector(u *unstructured.Unstructured) klabels.Selector {
	gk := u.GroupVersionKind().GroupKind().String()
	switch gk {
	case "App.k2.dev":
		return klabels.SelectorFromSet(klabels.Set{app.LabelApp: u.GetName()})
	case "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps", "ReplicaSet.apps", "Job.batch":
		m, ok, _ := unstructured.NestedMap(u.Object, "spec", "selector")
		if !ok {
			return nil
		}
		var ls metav1.LabelSelector
		if runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ls) != nil {
			return nil
		}
		sel, err := metav1.LabelSelectorAsSelector(&ls)
		if err != nil || sel.Empty() {
			return nil
		}
		return sel
	}
	return nil
}

// podProblem is why one pod is not ready: the first container that is not,
// or the scheduler's reason.
type podProblem struct {
	Pod       string
	Namespace string
	UID       string
	Node      string
	Container string
	Image     string
	Reason    string // a waiting reason, Unschedulable, NotReady, Pending, Failed
	Message   string // the kubelet's or scheduler's message
	Restarts  int32
	// LastExit is the exit code of the container's last run that ended
	// (this one, if Terminated), if any.
	LastExit *int32
	// Terminated: the container has exited and is not running now.
	Terminated bool
	// Controlled: the pod has a controller that makes a new one if it is
	// deleted (a ReplicaSet, StatefulSet, DaemonSet, Job).
	Controlled bool
}

// bad reports whether the problem is an error rather than progress
// (creating containers, initialising, waiting for a readiness probe).
func (p *podProblem) bad() bool {
	switch p.Reason {
	case reasonContainerCreating, reasonPodInitializing, reasonNotReady, reasonPending:
		return false
	}
	return true
}

// backedOff reports whether the pod is in (or between) the back-offs of a
// failing pull or a crashing container, which a retry should not have to
// sit through: a new pod starts at once.
func (p *podProblem) backedOff() bool {
	if !p.Controlled {
		return false
	}
	switch p.Reason {
	case ReasonErrImagePull, ReasonImagePullBackOff, ReasonCrashLoopBackOff, ReasonInvalidImageName,
		ReasonErrImageNeverPull, ReasonCreateConfigError:
		return true
	}
	return p.Restarts > 0 && p.bad()
}

// crashing reports whether the container keeps exiting: after at least n
// restarts it is in CrashLoopBackOff, or has just exited again (the kubelet
// backs off before the next start, but under load may report the back-off
// late or not at all between two polls).
func (p *podProblem) crashing(n int32) bool {
	return p.Restarts >= n && (p.Reason == ReasonCrashLoopBackOff || p.Terminated)
}

// diagnosePod returns why pod is not ready, or nil when it is ready (or
// has completed).
func diagnosePod(pod *corev1.Pod) *podProblem {
	if pod.Status.Phase == corev1.PodSucceeded || pod.DeletionTimestamp != nil {
		return nil
	}
	p := &podProblem{Pod: pod.Name, Namespace: pod.Namespace, UID: string(pod.UID), Node: pod.Spec.NodeName,
		Controlled: metav1.GetControllerOf(pod) != nil}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			p.Reason, p.Message = orDash(c.Reason), c.Message
			if c.Reason == "" {
				p.Reason = ReasonUnschedulable
			}
			return p
		}
	}
	images := map[string]string{}
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		images[c.Name] = c.Image
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if cs.State.Waiting == nil || cs.State.Waiting.Reason == reasonPodInitializing {
			continue
		}
		p.fill(cs, images[cs.Name])
		p.Reason, p.Message = cs.State.Waiting.Reason, cs.State.Waiting.Message
		if p.Reason == "" {
			p.Reason = reasonContainerCreating
		}
		return p
	}
	if pod.Status.Phase == corev1.PodFailed {
		p.Reason, p.Message = reasonFailed, strings.TrimSpace(pod.Status.Reason+" "+pod.Status.Message)
		for _, cs := range statuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				p.fill(cs, images[cs.Name])
				p.Message = fmt.Sprintf("exited with code %d (%s) %s", t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
				break
			}
		}
		return p
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if !cs.Ready {
			p.fill(cs, images[cs.Name])
			p.Reason = reasonNotReady
			switch {
			case cs.State.Running != nil:
				p.Message = "running, not ready yet (readiness probe)"
			case cs.State.Terminated != nil:
				p.Reason = cmp.Or(cs.State.Terminated.Reason, "Terminated")
				p.Message = fmt.Sprintf("exited with code %d", cs.State.Terminated.ExitCode)
			}
			return p
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return nil
		}
	}
	if len(pod.Status.ContainerStatuses) > 0 {
		return nil // containers ready; the pod's condition follows
	}
	p.Reason = reasonPending
	if p.Node != "" {
		p.Message = "scheduled on " + p.Node
	}
	return p
}

func (p *podProblem) fill(cs corev1.ContainerStatus, specImage string) {
	p.Container, p.Image, p.Restarts = cs.Name, specImage, cs.RestartCount
	if p.Image == "" {
		p.Image = cs.Image
	}
	t := cs.State.Terminated
	p.Terminated = t != nil
	if t == nil {
		t = cs.LastTerminationState.Terminated
	}
	if t != nil {
		code := t.ExitCode
		p.LastExit = &code
	}
}

// brief shortens a kubelet message for the progress line: the last parts
// of a chain of "context: cause" (so a pull error ends in "connect:
// connection refused").
func brief(msg string) string {
	msg = strings.TrimSpace(msg)
	parts := strings.Split(msg, ": ")
	out := parts[len(parts)-1]
	for i := len(parts) - 2; i >= 0 && (len(out) < 24 || i >= len(parts)-2); i-- {
		next := parts[i] + ": " + out
		if len(next) > 120 {
			break
		}
		out = next
	}
	return out
}

// line is the problem as the progress line shows it:
// "pod web-5d9c…: ImagePullBackOff: 127.0.0.1:5999/web:1.0: connect: connection refused".
func (p *podProblem) line() string {
	s := "pod " + p.Pod + ": " + p.Reason
	if p.Image != "" && isPullReason(p.Reason) {
		s += ": " + p.Image
	}
	if p.Reason == ReasonCrashLoopBackOff {
		s += fmt.Sprintf(" (%d restarts", p.Restarts)
		if p.LastExit != nil {
			s += fmt.Sprintf(", exit code %d", *p.LastExit)
		}
		s += ")"
		return s
	}
	if p.Message != "" {
		s += ": " + brief(p.Message)
	}
	return s
}

func isPullReason(r string) bool {
	switch r {
	case ReasonErrImagePull, ReasonImagePullBackOff, ReasonInvalidImageName, ReasonErrImageNeverPull:
		return true
	}
	return false
}

// requests returns what the scheduler needs a node to have for pod: the sum
// of its containers' requests, or an init container's if larger.
func requests(pod *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		for name, q := range c.Resources.Requests {
			sum := out[name]
			sum.Add(q)
			out[name] = sum
		}
	}
	for _, c := range pod.Spec.InitContainers {
		for name, q := range c.Resources.Requests {
			if cur, ok := out[name]; !ok || q.Cmp(cur) > 0 {
				out[name] = q.DeepCopy()
			}
		}
	}
	return out
}

// missingResource says which resource pod requests that no node in nodes
// can ever give it: none has it at all, or none has that much allocatable.
// It returns "" when some node could hold the pod's requests one by one (the
// pod may be waiting for room, which can come).
func missingResource(pod *corev1.Pod, nodes []corev1.Node) string {
	if len(nodes) == 0 {
		return ""
	}
	req := requests(pod)
	for _, name := range sortedResourceNames(req) {
		q := req[name]
		if q.IsZero() {
			continue
		}
		var largest resource.Quantity
		has, fits := false, false
		for _, n := range nodes {
			a, ok := n.Status.Allocatable[name]
			if !ok {
				continue
			}
			has = true
			if a.Cmp(q) >= 0 {
				fits = true
				break
			}
			if a.Cmp(largest) > 0 {
				largest = a
			}
		}
		switch {
		case fits:
		case !has:
			return fmt.Sprintf("it requests %s %s and no node has %s", q.String(), name, name)
		default:
			return fmt.Sprintf("it requests %s %s and the largest node has %s allocatable", q.String(), name, largest.String())
		}
	}
	return ""
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	return slices.Sorted(maps.Keys(l))
}

// lastLogLines returns the last lines a container wrote in its last run
// that ended, at most n: the current one if it has exited (terminated),
// else the previous one.
func lastLogLines(ctx context.Context, cl *clients, ns, pod, container string, terminated bool, n int) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tail := int64(n)
	var raw []byte
	var err error
	for _, previous := range []bool{!terminated, terminated} {
		raw, err = cl.kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Previous: previous, TailLines: &tail}).DoRaw(ctx)
		if err == nil && len(strings.TrimSpace(string(raw))) > 0 {
			break
		}
	}
	if err != nil {
		return []string{"(reading its log: " + brief(err.Error()) + ")"}
	}
	var out []string
	for l := range strings.SplitSeq(strings.TrimRight(string(raw), "\n"), "\n") {
		l = strings.TrimRight(l, "\r ")
		if len(l) > maxLogLineLength {
			l = l[:maxLogLineLength] + "…"
		}
		out = append(out, l)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	if len(out) == 1 && out[0] == "" {
		return []string{"(its log is empty)"}
	}
	return out
}

// imageRegistry returns the registry host of an image reference ("" for
// the default registry).
func imageRegistry(image string) string {
	host, _, ok := strings.Cut(image, "/")
	if !ok || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		return ""
	}
	return host
}

// loopbackSilent reports whether image names a registry on this machine's
// loopback where nothing listens (the deploying host's view; local
// machines reach the host's loopback registries through it).
func loopbackSilent(image string) (string, bool) {
	host := imageRegistry(image)
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		return "", false
	}
	if ip := net.ParseIP(h); !(h == "localhost" || ip != nil && ip.IsLoopback()) {
		return "", false
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(h, port), time.Second)
	if err != nil {
		return host, true
	}
	c.Close()
	return host, false
}
