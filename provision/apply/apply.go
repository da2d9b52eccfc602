// Package apply applies sets of Kubernetes objects the k2 way: server-side
// apply with field manager k2, versionless objects resolved through
// discovery to the server's preferred stable version, alpha/beta APIs
// refused unless allowed, CustomResourceDefinitions first and Namespaces
// next, optional pruning of what an inventory no longer holds, and a wait
// for readiness that explains what is not ready and why.
//
// k2 apply, k2 deploy and k2 upgrade all apply objects through Apply.
package apply

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
)

// Defaults of Options.
const (
	DefaultFieldManager = "k2"
	DefaultNamespace    = "default"
	DefaultTimeout      = 5 * time.Minute
	DefaultConcurrency  = 8
	// InventoryLabel marks every object applied with Options.Inventory.
	InventoryLabel = "k2.dev/inventory"
)

// Options tune Apply. The zero value applies stable APIs only, without
// pruning or waiting.
type Options struct {
	// FieldManager is the server-side apply field manager; default "k2".
	FieldManager string
	// AllowBeta accepts alpha and beta APIs, explicit or resolved.
	AllowBeta bool
	// Namespace is used for namespaced objects that name none; default "default".
	Namespace string
	// Inventory, when set, labels every object InventoryLabel=Inventory
	// (e.g. "env.layer"), so a later Apply with Prune can find them.
	Inventory string
	// Prune deletes objects labelled with Inventory that objs no longer
	// holds. It needs Inventory.
	Prune bool
	// Wait waits until every object is ready (Deployments available,
	// StatefulSets and DaemonSets ready, Jobs complete, Apps Ready, CRDs
	// established) or Timeout passes, failing early on what will not fix
	// itself (see the function Wait).
	Wait bool
	// Timeout bounds the wait; default 5 minutes.
	Timeout time.Duration
	// PullGrace is how long an image pull may keep failing before the wait
	// fails (see Wait); default 60 s.
	PullGrace time.Duration
	// Progress receives what is not ready and why while waiting (see
	// WaitOptions.Progress).
	Progress func(WaitProgress)
	// Concurrency is how many objects are applied at once; default 8.
	Concurrency int
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
}

// ObjectRef names an object.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
}

func (r ObjectRef) String() string {
	s := r.Kind + " "
	if r.Namespace != "" {
		s += r.Namespace + "/"
	}
	s += r.Name
	if r.APIVersion != "" {
		s += " (" + r.APIVersion + ")"
	}
	return s
}

// Actions in ObjectResult.Action.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	ActionFailed     = "failed"
	ActionSkipped    = "skipped" // an earlier phase failed
)

// ObjectResult is what happened to one object.
type ObjectResult struct {
	Object ObjectRef `json:"object"`
	Source string    `json:"source,omitempty"`
	// Versionless is true when k2 chose the apiVersion.
	Versionless bool   `json:"versionless,omitempty"`
	Action      string `json:"action"`
	// Ready is set when Options.Wait was; Status says why not.
	Ready  *bool    `json:"ready,omitempty"`
	Status string   `json:"status,omitempty"`
	Events []string `json:"events,omitempty"`
	Error  string   `json:"error,omitempty"`

	uid     string
	mapping Mapping
}

// Result is what Apply did, one entry per object in input order.
type Result struct {
	Objects []ObjectResult `json:"objects"`
	Pruned  []ObjectRef    `json:"pruned,omitempty"`
}

// Apply applies objs to the cluster at cfg. It checks every object first
// (unstable, unknown or ambiguous APIs → *RefusedError, nothing applied),
// then applies CRDs, Namespaces and the rest in that order, prunes and
// waits as opts say. The result holds an entry per object even on error.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, opts Options) (*Result, error) {
	opts.defaults()
	cl, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	res, err := discover(cl.disc, opts.Logger)
	if err != nil {
		return nil, err
	}
	work, res2, err := prepare(objs, res, opts)
	if err != nil {
		return res2, err
	}
	result := &Result{Objects: make([]ObjectResult, len(work))}
	for i, w := range work {
		result.Objects[i] = w.result
	}

	phases := [][]int{nil, nil, nil}
	for i, w := range work {
		phases[phaseOf(w.mapping.GVK)] = append(phases[phaseOf(w.mapping.GVK)], i)
	}
	for p, idx := range phases {
		if len(idx) == 0 {
			continue
		}
		opts.Logger.Info("applying", "phase", phaseNames[p], "objects", len(idx))
		if err := applyAll(ctx, cl, work, idx, result, opts); err != nil {
			for _, later := range phases[p+1:] {
				for _, i := range later {
					result.Objects[i].Action = ActionSkipped
				}
			}
			return result, err
		}
		if p == phaseCRD {
			if err := waitEstablished(ctx, cl, work, idx); err != nil {
				return result, err
			}
		}
	}
	if opts.Prune && opts.Inventory != "" {
		pruned, err := prune(ctx, cl, work, opts)
		result.Pruned = pruned
		if err != nil {
			return result, err
		}
	}
	if opts.Wait {
		if err := waitReady(ctx, cl, work, result, opts.waitOptions()); err != nil {
			return result, err
		}
	}
	return result, nil
}

func (o *Options) defaults() {
	if o.FieldManager == "" {
		o.FieldManager = DefaultFieldManager
	}
	w := o.waitOptions()
	o.Namespace, o.Timeout, o.PullGrace, o.Concurrency, o.Logger = w.Namespace, w.Timeout, w.PullGrace, w.Concurrency, w.Logger
}

// waitOptions are the options of the wait after an apply, defaulted.
func (o *Options) waitOptions() WaitOptions {
	w := WaitOptions{Namespace: o.Namespace, Timeout: o.Timeout, PullGrace: o.PullGrace,
		Concurrency: o.Concurrency, Logger: o.Logger, Progress: o.Progress}
	w.defaults()
	return w
}

type clients struct {
	disc discovery.DiscoveryInterface
	dyn  dynamic.Interface
	meta metadata.Interface
	kube kubernetes.Interface
}

func newClients(cfg *rest.Config) (*clients, error) {
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 {
		c.QPS, c.Burst = 200, 400 // client-go's default of 5 makes 1,000 objects crawl
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	meta, err := metadata.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("connecting to the API server: %w", err)
	}
	return &clients{disc: disc, dyn: dyn, meta: meta, kube: kube}, nil
}

// Discover returns a Resolver for the server at cfg.
func Discover(cfg *rest.Config, logger *slog.Logger) (*Resolver, error) {
	cl, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return discover(cl.disc, logger)
}

func discover(disc discovery.DiscoveryInterface, logger *slog.Logger) (*Resolver, error) {
	groups, lists, err := disc.ServerGroupsAndResources()
	if err != nil {
		if !discovery.IsGroupDiscoveryFailedError(err) {
			return nil, fmt.Errorf("discovering the server's APIs: %w", err)
		}
		// An aggregated API that is down (metrics, say) must not block
		// applying everything else.
		logger.Warn("some API groups could not be discovered", "err", err)
	}
	return NewResolver(groups, lists), nil
}

type item struct {
	obj     *unstructured.Unstructured
	mapping Mapping
	result  ObjectResult
}

// prepare resolves and normalises every object, or refuses the set.
func prepare(objs []*unstructured.Unstructured, res *Resolver, opts Options) ([]*item, *Result, error) {
	for _, o := range objs {
		if isCRD(o) {
			res.AddCRD(o.Object)
		}
	}
	var problems []Problem
	work := make([]*item, 0, len(objs))
	seen := map[string]string{}
	for _, in := range objs {
		o := in.DeepCopy()
		src := Source(o)
		if ann := o.GetAnnotations(); ann != nil {
			delete(ann, SourceAnnotation)
			if len(ann) == 0 {
				ann = nil
			}
			o.SetAnnotations(ann)
		}
		ref := ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
		m, err := res.Resolve(o.GetAPIVersion(), o.GetKind(), opts.AllowBeta)
		if err == nil && o.GetName() == "" {
			err = fmt.Errorf("%w: no metadata.name", ErrInvalidObject)
		}
		if err != nil {
			problems = append(problems, Problem{Object: ref, Source: src, Err: err, Message: err.Error()})
			continue
		}
		versionless := o.GetAPIVersion() != m.GVK.GroupVersion().String()
		o.SetAPIVersion(m.GVK.GroupVersion().String())
		if m.Namespaced {
			if o.GetNamespace() == "" {
				o.SetNamespace(opts.Namespace)
			}
		} else {
			o.SetNamespace("")
		}
		if opts.Inventory != "" {
			l := o.GetLabels()
			if l == nil {
				l = map[string]string{}
			}
			l[InventoryLabel] = opts.Inventory
			o.SetLabels(l)
		}
		ref = ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
		key := objKey(m.GVK.GroupKind(), o.GetNamespace(), o.GetName())
		if prev, dup := seen[key]; dup {
			err := fmt.Errorf("%w: listed twice (also at %s)", ErrInvalidObject, prev)
			problems = append(problems, Problem{Object: ref, Source: src, Err: err, Message: err.Error()})
			continue
		}
		seen[key] = src
		if seen[key] == "" {
			seen[key] = "an earlier object"
		}
		work = append(work, &item{obj: o, mapping: m, result: ObjectResult{Object: ref, Source: src, Versionless: versionless, mapping: m}})
	}
	if len(problems) > 0 {
		return nil, &Result{}, &RefusedError{Problems: problems}
	}
	return work, nil, nil
}

func objKey(gk schema.GroupKind, ns, name string) string {
	return gk.String() + "/" + ns + "/" + name
}

func isCRD(o *unstructured.Unstructured) bool {
	gv, _ := schema.ParseGroupVersion(o.GetAPIVersion())
	return o.GetKind() == "CustomResourceDefinition" && (o.GetAPIVersion() == "" || gv.Group == "apiextensions.k8s.io")
}

const (
	phaseCRD = iota
	phaseNamespace
	phaseRest
)

var phaseNames = []string{"CustomResourceDefinitions", "Namespaces", "objects"}

func phaseOf(gvk schema.GroupVersionKind) int {
	switch {
	case gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition":
		return phaseCRD
	case gvk.Group == "" && gvk.Kind == "Namespace":
		return phaseNamespace
	}
	return phaseRest
}

func (c *clients) resource(m Mapping, ns string) dynamic.ResourceInterface {
	r := c.dyn.Resource(m.GVR())
	if m.Namespaced {
		return r.Namespace(ns)
	}
	return r
}

// applyAll applies work[idx] concurrently and returns the joined errors.
func applyAll(ctx context.Context, cl *clients, work []*item, idx []int, result *Result, opts Options) error {
	existing := currentVersions(ctx, cl, work, idx)
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, i := range idx {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w := work[i]
			before, known := existing[i]
			action, uid, err := applyOne(ctx, cl, w, before, known, opts)
			mu.Lock()
			defer mu.Unlock()
			r := &result.Objects[i]
			r.Action, r.uid = action, uid
			w.result.uid = uid
			if err != nil {
				r.Action, r.Error = ActionFailed, err.Error()
				errs = append(errs, &ObjectError{Object: r.Object, Source: r.Source, Err: err})
				return
			}
			opts.Logger.Debug("applied", "object", r.Object.String(), "action", action)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// retriable errors: a CR's endpoint can lag its CRD's Established condition
// by a moment; the server can be briefly busy.
// A missing namespace is not retried: it will not appear by itself.
func retriable(err error) bool {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Details != nil && se.Status().Details.Kind == "namespaces" {
		return false
	}
	return apierrors.IsNotFound(err) || apierrors.IsServiceUnavailable(err) ||
		apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}

var applyBackoff = wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 7, Cap: 3 * time.Second}

// batchList is the number of objects of one resource in one namespace from
// which their current versions are listed at once rather than read one by one.
const batchList = 10

// currentVersions returns the resourceVersion of the objects work[idx]
// that exist ("" for those that do not), for the resources with at least
// batchList objects in one namespace; the others are read one by one.
func currentVersions(ctx context.Context, cl *clients, work []*item, idx []int) map[int]string {
	type group struct {
		gvr schema.GroupVersionResource
		ns  string
	}
	groups := map[group][]int{}
	for _, i := range idx {
		w := work[i]
		g := group{w.mapping.GVR(), w.obj.GetNamespace()}
		groups[g] = append(groups[g], i)
	}
	out := map[int]string{}
	for g, is := range groups {
		if len(is) < batchList {
			continue
		}
		list, err := cl.meta.Resource(g.gvr).Namespace(g.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue // read one by one
		}
		rv := make(map[string]string, len(list.Items))
		for _, it := range list.Items {
			rv[it.Name] = it.ResourceVersion
		}
		for _, i := range is {
			out[i] = rv[work[i].obj.GetName()]
		}
	}
	return out
}

// applyOne applies one object. before is its current resourceVersion
// ("" = absent) when known, otherwise it is read first.
func applyOne(ctx context.Context, cl *clients, w *item, before string, known bool, opts Options) (action, uid string, err error) {
	rc := cl.resource(w.mapping, w.obj.GetNamespace())
	err = retry.OnError(applyBackoff, retriable, func() error {
		if !known {
			cur, err := rc.Get(ctx, w.obj.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				before = ""
			case err != nil:
				return err
			default:
				before = cur.GetResourceVersion()
			}
		}
		known = false // a retry reads again
		out, err := rc.Apply(ctx, w.obj.GetName(), w.obj, metav1.ApplyOptions{FieldManager: opts.FieldManager, Force: true})
		if err != nil {
			return err
		}
		uid = string(out.GetUID())
		switch {
		case before == "":
			action = ActionCreated
		case before == out.GetResourceVersion():
			action = ActionUnchanged
		default:
			action = ActionConfigured
		}
		return nil
	})
	return action, uid, err
}
