package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// childGVRs are the kinds an App can own, in the order they are applied.
var childGVRs = []struct {
	kind string
	gvr  schema.GroupVersionResource
}{
	{"ConfigMap", schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}},
	{"Secret", schema.GroupVersionResource{Version: "v1", Resource: "secrets"}},
	{"Deployment", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
	{"StatefulSet", schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}},
	{"Service", schema.GroupVersionResource{Version: "v1", Resource: "services"}},
	{"Ingress", schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}},
	{"HorizontalPodAutoscaler", schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}},
	{"PodDisruptionBudget", schema.GroupVersionResource{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}},
}

// Events the controller records on Apps.
const (
	EventCreated     = "Created"
	EventUpdated     = "Updated"
	EventDeleted     = "Deleted"
	EventApplyFailed = "ApplyFailed"
	EventInvalidSpec = "InvalidSpec"
	EventReady       = "Ready"
	EventNotReady    = "NotReady"
)

// ControllerOptions tune NewController; the zero value is what k2 server uses.
type ControllerOptions struct {
	// Workers is how many Apps reconcile at once; default 2.
	Workers int
	// Resync re-reconciles every App this often; default 10 minutes.
	Resync time.Duration
	// MaxBackoff caps the retry delay after errors; default 2 minutes.
	MaxBackoff time.Duration
}

// Controller reconciles Apps with their children. Build one with
// NewController and Run it; RunController does both.
type Controller struct {
	dyn      dynamic.Interface
	apps     cache.SharedIndexInformer
	children map[string]cache.SharedIndexInformer // by kind
	appF     dynamicinformer.DynamicSharedInformerFactory
	childF   dynamicinformer.DynamicSharedInformerFactory
	queue    workqueue.TypedRateLimitingInterface[string]
	events   record.EventBroadcaster
	recorder record.EventRecorder
	log      *slog.Logger
	opts     ControllerOptions
}

// RunController installs the App CRD (idempotent) and runs the App
// controller until ctx is cancelled. k2 server runs it in its process.
func RunController(ctx context.Context, cfg *rest.Config, logger *slog.Logger) error {
	if err := InstallCRD(ctx, cfg); err != nil {
		return err
	}
	c, err := NewController(cfg, logger, ControllerOptions{})
	if err != nil {
		return err
	}
	return c.Run(ctx)
}

// NewController builds a controller for the cluster at cfg.
func NewController(cfg *rest.Config, logger *slog.Logger, opts ControllerOptions) (*Controller, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.Resync <= 0 {
		opts.Resync = 10 * time.Minute
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 2 * time.Minute
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = 50, 100
	}
	cfg.UserAgent = "k2-app-controller"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the App controller: %w", err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting the App controller: %w", err)
	}
	c := &Controller{
		dyn:      dyn,
		children: map[string]cache.SharedIndexInformer{},
		log:      logger.With("controller", "app"),
		opts:     opts,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[string](200*time.Millisecond, opts.MaxBackoff),
				&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(20), 200)},
			),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "apps"}),
	}
	c.appF = dynamicinformer.NewDynamicSharedInformerFactory(dyn, opts.Resync)
	c.apps = c.appF.ForResource(GVR).Informer()
	_, _ = c.apps.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { c.enqueue(o) },
		UpdateFunc: func(_, o any) { c.enqueue(o) },
	})
	c.childF = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, opts.Resync, metav1.NamespaceAll,
		func(o *metav1.ListOptions) { o.LabelSelector = LabelManagedBy + "=" + FieldManager })
	for _, ch := range childGVRs {
		inf := c.childF.ForResource(ch.gvr).Informer()
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    c.enqueueOwner,
			UpdateFunc: func(_, o any) { c.enqueueOwner(o) },
			DeleteFunc: c.enqueueOwner,
		})
		c.children[ch.kind] = inf
	}
	c.events = record.NewBroadcaster()
	c.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	c.recorder = c.events.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "k2-app-controller"})
	return c, nil
}

func (c *Controller) enqueue(o any) {
	key, err := cache.MetaNamespaceKeyFunc(o)
	if err != nil {
		return
	}
	c.queue.Add(key)
}

// enqueueOwner queues the App that controls a child.
func (c *Controller) enqueueOwner(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return
	}
	ref := metav1.GetControllerOf(m)
	if ref == nil || ref.Kind != Kind || ref.APIVersion != GroupVersion.String() {
		return
	}
	c.queue.Add(m.GetNamespace() + "/" + ref.Name)
}

// Run starts the informers and workers and blocks until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.events.Shutdown()
	defer c.queue.ShutDown()
	c.appF.Start(ctx.Done())
	c.childF.Start(ctx.Done())
	c.log.Info("starting; waiting for caches")
	syncs := []cache.InformerSynced{c.apps.HasSynced}
	for _, inf := range c.children {
		syncs = append(syncs, inf.HasSynced)
	}
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		return fmt.Errorf("app controller: waiting for caches: %w", ctx.Err())
	}
	c.log.Info("running", "workers", c.opts.Workers)
	for range c.opts.Workers {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
	c.queue.ShutDown()
	c.appF.Shutdown()
	c.childF.Shutdown()
	c.log.Info("stopped")
	return nil
}

func (c *Controller) worker(ctx context.Context) {
	for c.next(ctx) {
	}
}

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.reconcile(ctx, key); err != nil {
		if ctx.Err() != nil {
			return false // shutting down
		}
		n := c.queue.NumRequeues(key)
		c.log.Warn("reconcile failed; retrying", "app", key, "attempt", n+1, "err", err)
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// reconcile brings one App's children and status in line with its spec.
func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := c.appF.ForResource(GVR).Lister().ByNamespace(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // deleted: the garbage collector removes the children
	}
	if err != nil {
		return err
	}
	u := obj.(*unstructured.Unstructured)
	if u.GetDeletionTimestamp() != nil {
		return nil
	}
	a, err := FromUnstructured(u.Object)
	if err != nil {
		return c.fail(ctx, u, &App{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}, nil, invalidSpec(name, err))
	}
	desired, err := Render(a)
	if err != nil {
		return c.fail(ctx, u, a, nil, invalidSpec(name, err))
	}
	live := map[string]*unstructured.Unstructured{}
	want := map[string]bool{}
	for _, d := range desired {
		kind := d.GetKind()
		want[kind+"/"+d.GetName()] = true
		before, _, _ := c.children[kind].GetIndexer().GetByKey(ns + "/" + d.GetName())
		out, err := c.dyn.Resource(gvrOf(kind)).Namespace(ns).Apply(ctx, d.GetName(), d,
			metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if err != nil {
			return c.fail(ctx, u, a, live, applyFailed(kind+"/"+d.GetName(), err))
		}
		live[kind] = out
		switch b, _ := before.(*unstructured.Unstructured); {
		case b == nil:
			c.recorder.Eventf(u, corev1.EventTypeNormal, EventCreated, "Created %s/%s", kind, d.GetName())
		case changed(b, out):
			c.recorder.Eventf(u, corev1.EventTypeNormal, EventUpdated, "Updated %s/%s", kind, d.GetName())
		}
	}
	if err := c.deleteStale(ctx, u, a, want); err != nil {
		return c.fail(ctx, u, a, live, applyFailed(err.object, err.err))
	}
	return c.writeStatus(ctx, u, a, Rollup(a, live, nil))
}

type staleError struct {
	object string
	err    error
}

// deleteStale removes children the App no longer asks for (an Ingress
// whose expose was removed, the Deployment after a volume was added).
func (c *Controller) deleteStale(ctx context.Context, u *unstructured.Unstructured, a *App, want map[string]bool) *staleError {
	sel := labels.SelectorFromSet(labels.Set{LabelApp: a.Name})
	for _, ch := range childGVRs {
		var stale []*unstructured.Unstructured
		_ = cache.ListAllByNamespace(c.children[ch.kind].GetIndexer(), a.Namespace, sel, func(o any) {
			cu := o.(*unstructured.Unstructured)
			ref := metav1.GetControllerOf(cu)
			if ref != nil && ref.UID == a.UID && !want[ch.kind+"/"+cu.GetName()] {
				stale = append(stale, cu)
			}
		})
		for _, s := range stale {
			bg := metav1.DeletePropagationBackground
			err := c.dyn.Resource(ch.gvr).Namespace(a.Namespace).Delete(ctx, s.GetName(), metav1.DeleteOptions{
				PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: ptr(s.GetUID())},
			})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return &staleError{ch.kind + "/" + s.GetName(), fmt.Errorf("deleting: %w", err)}
			}
			c.recorder.Eventf(u, corev1.EventTypeNormal, EventDeleted, "Deleted %s/%s: no longer in the spec", ch.kind, s.GetName())
		}
	}
	return nil
}

// changed reports whether a child's desired state differs between two
// versions: everything but status and server-managed metadata.
func changed(before, after *unstructured.Unstructured) bool {
	strip := func(u *unstructured.Unstructured) map[string]any {
		m := runtime.DeepCopyJSON(u.Object)
		delete(m, "status")
		md, _ := m["metadata"].(map[string]any)
		m["metadata"] = map[string]any{"labels": md["labels"], "annotations": md["annotations"], "ownerReferences": md["ownerReferences"]}
		return m
	}
	return !reflect.DeepEqual(strip(before), strip(after))
}

// maxMessage caps error messages kept in the status and events.
const maxMessage = 512

func ptr[T any](v T) *T { return &v }

func gvrOf(kind string) schema.GroupVersionResource {
	for _, ch := range childGVRs {
		if ch.kind == kind {
			return ch.gvr
		}
	}
	panic("app: no resource for kind " + kind)
}

// failure is what went wrong in one reconcile, to record on the App.
type failure struct {
	object string // the child (or the App) it concerns: Kind/name
	reason string // the event reason
	err    error
	retry  bool // whether retrying can help; if not, only a spec change can
}

// invalidSpec is a spec that cannot be rendered: not retried.
func invalidSpec(app string, err error) failure {
	return failure{object: "App/" + app, reason: EventInvalidSpec, err: err}
}

// applyFailed is a child that could not be applied or deleted: retried.
func applyFailed(object string, err error) failure {
	return failure{object: object, reason: EventApplyFailed, err: err, retry: true}
}

// fail records f on the App (event, status.lastError, Ready=False) and
// returns its error when retrying can help, nil when only a spec change can.
// live holds the children applied so far (may be nil).
func (c *Controller) fail(ctx context.Context, u *unstructured.Unstructured, a *App, live map[string]*unstructured.Unstructured, f failure) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	object, err := f.object, f.err
	msg := err.Error()
	if se := (&apierrors.StatusError{}); errors.As(err, &se) {
		msg = se.ErrStatus.Message
	}
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "…"
	}
	c.recorder.Eventf(u, corev1.EventTypeWarning, f.reason, "%s: %s", object, msg)
	if live == nil {
		live = map[string]*unstructured.Unstructured{}
	}
	// Keep the last known workload for the replica counts.
	for _, k := range []string{"Deployment", "StatefulSet"} {
		if _, ok := live[k]; !ok {
			if o, ok, _ := c.children[k].GetIndexer().GetByKey(a.Namespace + "/" + a.Name); ok {
				live[k] = o.(*unstructured.Unstructured)
			}
		}
	}
	st := Rollup(a, live, &LastError{Object: object, Message: msg, Time: metav1.Now()})
	if serr := c.writeStatus(ctx, u, a, st); serr != nil {
		c.log.Warn("writing status", "app", a.Namespace+"/"+a.Name, "err", serr)
	}
	if !f.retry {
		c.log.Info("App spec is invalid; waiting for a change", "app", a.Namespace+"/"+a.Name, "err", err)
		return nil
	}
	return fmt.Errorf("%s: %w", object, err)
}

// writeStatus updates the status subresource when it changed, and records
// Ready transitions as events.
func (c *Controller) writeStatus(ctx context.Context, u *unstructured.Unstructured, a *App, st Status) error {
	old := a.Status
	if old.LastError != nil && st.LastError != nil && old.LastError.Object == st.LastError.Object && old.LastError.Message == st.LastError.Message {
		st.LastError.Time = old.LastError.Time // the same error again is not news
	}
	if reflect.DeepEqual(normalize(old), normalize(st)) {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	// Server-side apply of the status subresource: no resourceVersion
	// precondition, so a stale cache cannot cause conflicts, and fields
	// this manager stops setting (a cleared lastError) are removed.
	patch := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": GroupVersion.String(), "kind": Kind,
		"metadata": map[string]any{"name": a.Name, "namespace": a.Namespace},
		"status":   m,
	}}
	if _, err := c.dyn.Resource(GVR).Namespace(a.Namespace).ApplyStatus(ctx, a.Name, patch,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("updating App status: %w", err)
	}
	was, is := meta.FindStatusCondition(old.Conditions, ConditionReady), meta.FindStatusCondition(st.Conditions, ConditionReady)
	switch {
	case is.Status == metav1.ConditionTrue && (was == nil || was.Status != metav1.ConditionTrue):
		c.recorder.Eventf(u, corev1.EventTypeNormal, EventReady, "App is ready: %s", is.Message)
	case was != nil && was.Status == metav1.ConditionTrue && is.Status != metav1.ConditionTrue:
		c.recorder.Eventf(u, corev1.EventTypeWarning, EventNotReady, "App is not ready: %s", is.Message)
	}
	return nil
}

// normalize makes two statuses comparable through a JSON round trip
// (times lose sub-second precision on the wire).
func normalize(s Status) map[string]any {
	b, _ := json.Marshal(s)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}
