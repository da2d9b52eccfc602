package apply

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

// DefaultPullGrace is how long an image pull may keep failing before a wait
// gives up on it (WaitOptions.PullGrace).
const DefaultPullGrace = time.Minute

// WaitOptions tune Wait (and the wait of Apply, from Options). The zero
// value waits up to DefaultTimeout with a pull grace of DefaultPullGrace.
type WaitOptions struct {
	// Namespace is used for namespaced objects that name none; default "default".
	Namespace string
	// Timeout bounds the wait; default 5 minutes.
	Timeout time.Duration
	// PullGrace is how long a container's image pull may keep failing
	// (ErrImagePull, ImagePullBackOff) before the wait fails; default 60 s.
	PullGrace time.Duration
	// Concurrency is how many objects are read at once; default 8.
	Concurrency int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Progress, if set, is called with what is not ready and why each time
	// that changes; without it the line is logged at info level.
	Progress func(WaitProgress)
}

// WaitProgress is the state of a wait, as the progress line shows it.
type WaitProgress struct {
	Ready int `json:"ready"`
	Total int `json:"total"`
	// Line says what is not ready and why: "1 of 2 objects ready —
	// Deployment default/web: 0/1 pods ready; pod web-5d9c…: ImagePullBackOff:
	// 127.0.0.1:5999/web:1.0: connect: connection refused".
	Line string `json:"line"`
}

func (o *WaitOptions) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.PullGrace <= 0 {
		o.PullGrace = DefaultPullGrace
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Wait waits until every object in objs is ready, as Apply with
// Options.Wait does for the objects it applied: Deployments available,
// StatefulSets and DaemonSets ready, Jobs complete, Apps Ready, CRDs
// established; other kinds are ready once they exist. It is how chart
// releases are watched. While waiting it reports, through opts.Progress,
// which objects are not ready and why, down to the pod and container.
//
// It does not wait for what will not fix itself: an image that cannot be
// pulled for longer than opts.PullGrace, an invalid image name, a missing
// image with pull policy Never, a container whose configuration cannot be
// made (a missing Secret or ConfigMap), a container in CrashLoopBackOff
// after its third restart (with its last log lines), a pod that needs a
// resource no node has. Those fail at once with a *StuckError naming the
// object, pod, container, image, reason, the kubelet's message and what to
// do. A timeout is a *NotReadyError. Pods a controller owns that are in
// such a back-off when the wait starts (an earlier attempt's) are deleted
// first, so that a fix made since takes effect at once.
func Wait(ctx context.Context, cfg *rest.Config, objs []ObjectRef, opts WaitOptions) (*Result, error) {
	opts.defaults()
	cl, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	res, err := discover(cl.disc, opts.Logger)
	if err != nil {
		return nil, err
	}
	result := &Result{Objects: make([]ObjectResult, len(objs))}
	var work []*item
	var idx []int
	for i, o := range objs {
		result.Objects[i] = ObjectResult{Object: o}
		m, err := res.Resolve(o.APIVersion, o.Kind, true)
		if err != nil {
			t := true
			result.Objects[i].Ready, result.Objects[i].Status = &t, "not checked: "+err.Error()
			continue
		}
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(m.GVK.GroupVersion().String())
		u.SetKind(m.GVK.Kind)
		u.SetName(o.Name)
		if m.Namespaced {
			if o.Namespace == "" {
				o.Namespace = opts.Namespace
			}
			u.SetNamespace(o.Namespace)
		} else {
			o.Namespace = ""
		}
		result.Objects[i].Object, result.Objects[i].mapping = o, m
		work = append(work, &item{obj: u, mapping: m, result: result.Objects[i]})
		idx = append(idx, i)
	}
	sub := &Result{Objects: make([]ObjectResult, len(work))}
	for j, w := range work {
		sub.Objects[j] = w.result
	}
	err = waitReady(ctx, cl, work, sub, opts)
	for j, i := range idx {
		result.Objects[i] = sub.Objects[j]
	}
	return result, err
}

// waitReady polls every object until all are ready, one will not become
// ready (see Wait), or the timeout passes; it fills Ready, Status and (for
// the ones not ready) Events in result.
func waitReady(ctx context.Context, cl *clients, work []*item, result *Result, opts WaitOptions) error {
	w := &waiter{cl: cl, work: work, result: result, opts: opts, since: map[string]time.Time{},
		readySince: map[string]readyMark{}, pullMsg: map[string]string{}}
	return w.run(ctx)
}

// waiter is one wait in progress.
type waiter struct {
	cl     *clients
	work   []*item
	result *Result
	opts   WaitOptions

	since      map[string]time.Time // problem (pod/container/class) → first seen
	readySince map[string]readyMark // pod UID → since when it is seen ready
	pullMsg    map[string]string    // pod/container → its last ErrImagePull message
	lastLine   string
	nodes      []corev1.Node
	nodesAt    time.Time
}

// readyMark is when a pod was first seen ready, and its containers'
// restarts then.
type readyMark struct {
	at       time.Time
	restarts int32
}

// objectPods is what the pods of one object say.
type objectPods struct {
	total, ready int
	settling     int // ready, but not for long (see settle)
	problems     []*podProblem
	pods         map[string]*corev1.Pod // by name, for the ones with problems
}

// first returns the problem to show: the first that is an error, else the
// first at all.
func (o *objectPods) first() *podProblem {
	for _, p := range o.problems {
		if p.bad() {
			return p
		}
	}
	if len(o.problems) > 0 {
		return o.problems[0]
	}
	return nil
}

func (w *waiter) run(ctx context.Context) error {
	w.opts.Logger.Info("waiting for objects to be ready", "objects", len(w.work), "timeout", w.opts.Timeout)
	deadline := time.Now().Add(w.opts.Timeout)
	pending := map[int]bool{}
	for i, it := range w.work {
		if hasReadiness(it.mapping.GVK) {
			pending[i] = true
			continue
		}
		t := true
		w.result.Objects[i].Ready = &t // ready once it exists
	}
	interval := 200 * time.Millisecond // quick first looks, then once a second
	firstRound := true
	var failed []int
	var pods map[int]*objectPods
	for {
		live, fails := w.fetch(ctx, pending)
		failed = append(failed, fails...)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		pods = w.pods(ctx, pending, live)
		if firstRound {
			firstRound = false
			if w.restartBackedOff(ctx, pods) {
				continue // look again at the new pods
			}
		}
		w.note(pending, pods)
		if err := w.stuck(ctx, pods); err != nil {
			return err
		}
		if len(pending) == 0 && len(failed) == 0 {
			w.opts.Logger.Info("all objects ready", "objects", len(w.work))
			return nil
		}
		if len(pending) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
		interval = min(interval*3/2, time.Second)
	}
	var bad []ObjectResult
	for i := range w.result.Objects {
		r := &w.result.Objects[i]
		if r.Ready != nil && *r.Ready {
			continue
		}
		r.Events = events(ctx, w.cl, r)
		bad = append(bad, *r)
	}
	err := &NotReadyError{Objects: bad}
	if len(failed) > 0 {
		return fmt.Errorf("%w (a failure is final; not waiting longer)", err)
	}
	return fmt.Errorf("after %s: %w", w.opts.Timeout, err)
}

// fetch reads the pending objects, records their readiness, drops the ready
// ones from pending and returns the live objects still pending and the
// indexes of those that failed for good.
func (w *waiter) fetch(ctx context.Context, pending map[int]bool) (map[int]*unstructured.Unstructured, []int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, w.opts.Concurrency)
	live := map[int]*unstructured.Unstructured{}
	var failed []int
	for i := range pending {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			it := w.work[i]
			u, err := w.cl.resource(it.mapping, it.obj.GetNamespace()).Get(ctx, it.obj.GetName(), metav1.GetOptions{})
			mu.Lock()
			defer mu.Unlock()
			r := &w.result.Objects[i]
			if err != nil {
				r.Status = "reading it: " + err.Error()
				return
			}
			ok, status, fail := Readiness(u)
			r.Ready, r.Status = &ok, status
			switch {
			case fail:
				delete(pending, i)
				failed = append(failed, i)
			case ok && !hasPods(u):
				delete(pending, i)
			default:
				live[i] = u // ready ones are confirmed by their pods (see pods)
			}
		}()
	}
	wg.Wait()
	return live, failed
}

// hasPods reports whether u is a workload whose pods Wait looks at.
func hasPods(u *unstructured.Unstructured) bool {
	return u.GetKind() == "Pod" && u.GroupVersionKind().Group == "" || podSelector(u) != nil
}

// settle is how long a pod whose containers have no readiness (or startup)
// probe must have been ready before its workload counts as ready: a
// container that exits at once is Running, and its pod Ready, for a moment.
const settle = 3 * time.Second

// settled reports whether a ready pod has been ready long enough (see
// settle): by its Ready condition's time, or by this wait's own watch.
func (w *waiter) settled(pod *corev1.Pod, now time.Time) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return true // completed
	}
	probed := true
	for _, c := range pod.Spec.Containers {
		if c.ReadinessProbe == nil && c.StartupProbe == nil {
			probed = false
		}
	}
	if probed {
		return true
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && now.Sub(c.LastTransitionTime.Time) >= settle {
			return true
		}
	}
	var restarts int32
	for _, cs := range pod.Status.ContainerStatuses {
		restarts += cs.RestartCount
	}
	seen, ok := w.readySince[string(pod.UID)]
	if !ok || seen.restarts != restarts { // first seen ready, or it restarted since
		seen = readyMark{at: now, restarts: restarts}
		w.readySince[string(pod.UID)] = seen
	}
	return now.Sub(seen.at) >= settle
}

// pods lists the pods of the pending objects that have any (one list per
// namespace) and diagnoses the ones not ready. An object its controller
// reports ready is ready once none of its pods has a problem and each has
// settled; it is then dropped from pending.
func (w *waiter) pods(ctx context.Context, pending map[int]bool, live map[int]*unstructured.Unstructured) map[int]*objectPods {
	sels := map[int]klabels.Selector{}
	byNS := map[string][]int{}
	for i := range pending {
		u := live[i]
		if u == nil {
			continue
		}
		var sel klabels.Selector
		if u.GetKind() == "Pod" && u.GroupVersionKind().Group == "" {
			sel = klabels.Everything()
		} else if sel = podSelector(u); sel == nil {
			continue
		}
		sels[i] = sel
		byNS[u.GetNamespace()] = append(byNS[u.GetNamespace()], i)
	}
	out := map[int]*objectPods{}
	now := time.Now()
	for ns, idx := range byNS {
		list, err := w.cl.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			w.opts.Logger.Debug("listing pods", "namespace", ns, "err", err)
			for _, i := range idx {
				if r := w.result.Objects[i]; r.Ready != nil && *r.Ready {
					delete(pending, i) // the controller's word, then
				}
			}
			continue
		}
		sort.Slice(list.Items, func(a, b int) bool { return list.Items[a].Name < list.Items[b].Name })
		for _, i := range idx {
			op := &objectPods{pods: map[string]*corev1.Pod{}}
			isPod := live[i].GetKind() == "Pod"
			for k := range list.Items {
				pod := &list.Items[k]
				if isPod && pod.Name != live[i].GetName() || !isPod && !sels[i].Matches(klabels.Set(pod.Labels)) {
					continue
				}
				if pod.DeletionTimestamp != nil && !isPod {
					continue // on its way out; its replacement counts
				}
				op.total++
				p := diagnosePod(pod)
				if p != nil {
					delete(w.readySince, string(pod.UID)) // it must settle again
				}
				if p == nil {
					op.ready++
					if !w.settled(pod, now) {
						op.settling++
					}
					continue
				}
				w.rememberPull(p)
				op.problems = append(op.problems, p)
				op.pods[pod.Name] = pod
			}
			out[i] = op
			r := &w.result.Objects[i]
			if p := op.first(); p != nil {
				r.Status += "; " + p.line()
			}
			if r.Ready != nil && *r.Ready {
				if len(op.problems) == 0 && op.settling == 0 {
					delete(pending, i)
					continue
				}
				f := false
				r.Ready = &f
				if op.settling > 0 {
					r.Status += fmt.Sprintf("; %d pod(s) ready for less than %s", op.settling, settle)
				}
			}
		}
	}
	return out
}

// rememberPull keeps the detailed message of a failed pull, which the
// back-off that follows may not repeat, and gives it to the back-off.
func (w *waiter) rememberPull(p *podProblem) {
	key := p.UID + "/" + p.Container
	switch p.Reason {
	case ReasonErrImagePull:
		if p.Message != "" {
			w.pullMsg[key] = p.Message
		}
	case ReasonImagePullBackOff:
		if m := w.pullMsg[key]; m != "" && !strings.Contains(p.Message, m) {
			p.Message = m
		}
	}
}

// restartBackedOff deletes the controller-owned pods that are in a back-off
// an earlier attempt left (a failed pull, a crash loop): their controllers
// make new ones that try at once, rather than after up to five minutes of
// back-off. It reports whether it deleted any.
func (w *waiter) restartBackedOff(ctx context.Context, pods map[int]*objectPods) bool {
	deleted := false
	for _, op := range pods {
		for _, p := range op.problems {
			if !p.backedOff() {
				continue
			}
			err := w.cl.kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Pod, metav1.DeleteOptions{})
			if err != nil {
				w.opts.Logger.Debug("restarting a pod", "pod", p.Namespace+"/"+p.Pod, "err", err)
				continue
			}
			deleted = true
			w.progress(WaitProgress{Ready: w.readyCount(), Total: len(w.work),
				Line: fmt.Sprintf("restarting pod %s (%s from an earlier attempt), so it tries again now", p.Pod, p.Reason)})
		}
	}
	return deleted
}

func (w *waiter) readyCount() int {
	n := 0
	for _, r := range w.result.Objects {
		if r.Ready != nil && *r.Ready {
			n++
		}
	}
	return n
}

// note reports the progress line when it changed.
func (w *waiter) note(pending map[int]bool, pods map[int]*objectPods) {
	ready := len(w.work) - len(pending)
	var idx []int
	for i := range pending {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for k, i := range idx {
		if k == 2 {
			parts = append(parts, fmt.Sprintf("and %d more", len(idx)-k))
			break
		}
		r := w.result.Objects[i]
		s := shortRef(r.Object) + ": "
		if op := pods[i]; op != nil {
			s += fmt.Sprintf("%d/%d pods ready", op.ready, op.total)
			if op.settling > 0 {
				s += fmt.Sprintf(" (%d for less than %s)", op.settling, settle)
			}
			if p := op.first(); p != nil {
				s += "; " + p.line()
			}
		} else {
			s += orDash(r.Status)
		}
		parts = append(parts, s)
	}
	line := fmt.Sprintf("%d of %d objects ready", ready, len(w.work))
	if len(parts) > 0 {
		line += " — " + strings.Join(parts, "; ")
	}
	if line == w.lastLine {
		return
	}
	w.lastLine = line
	w.progress(WaitProgress{Ready: ready, Total: len(w.work), Line: line})
}

func (w *waiter) progress(p WaitProgress) {
	if w.opts.Progress != nil {
		w.opts.Progress(p)
		return
	}
	w.opts.Logger.Info(p.Line)
}

func shortRef(r ObjectRef) string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}
