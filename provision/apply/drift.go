package apply

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// Changes a Difference reports.
const (
	// DriftAdded: an object nobody's layer holds, made by hand next to
	// a layer's objects (same namespace and resource), or carrying a
	// layer's inventory label.
	DriftAdded = "added"
	// DriftChanged: server-side applying the layer's object now would
	// change it (someone edited fields the layer sets).
	DriftChanged = "changed"
	// DriftDeleted: the layer's object is gone.
	DriftDeleted = "deleted"
)

// LayerObjects are the objects one layer says the cluster should hold.
type LayerObjects struct {
	Name string
	// Inventory is the InventoryLabel value the layer's objects carry
	// ("env.layer"); "" for objects applied without one (Helm charts).
	Inventory string
	// Namespace is the namespace of objects that name none (default "default").
	Namespace string
	Objects   []*unstructured.Unstructured
}

// Difference is one object that differs from what its layer says.
type Difference struct {
	Layer  string    `json:"layer"`
	Change string    `json:"change"`
	Object ObjectRef `json:"object"`
	// Source is where the layer defines the object ("file.yaml:3").
	Source string `json:"source,omitempty"`
	// Fields are the fields that differ (changed objects), at most 20.
	Fields []FieldChange `json:"fields,omitempty"`
	// Managers are the field managers other than k2 and the cluster's own
	// controllers that wrote to the object: who changed it (kubectl-edit…).
	Managers []string `json:"managers,omitempty"`
}

// FieldChange is one field whose live value is not the layer's.
type FieldChange struct {
	Path string `json:"path"`
	Live any    `json:"live"`
	Want any    `json:"want"`
}

// DriftResult is what Drift found.
type DriftResult struct {
	// Checked is how many of the layers' objects were compared.
	Checked     int          `json:"checked"`
	Differences []Difference `json:"differences"`
}

// maxFields caps the field changes listed per object.
const maxFields = 20

// Drift compares the cluster at cfg with layers: each object a layer holds
// is server-side applied as a dry run (field manager k2, forced) and the
// result compared with the live object, so only what applying it now would
// change counts (defaults and fields others own do not); a missing object
// is deleted. Objects labelled with a layer's inventory that the layer no
// longer holds, and objects made by hand (no owner, written by a field
// manager other than k2's and the cluster's own) in a namespace and
// resource a layer populates, are added. Nothing is changed.
func Drift(ctx context.Context, cfg *rest.Config, layers []LayerObjects, opts Options) (*DriftResult, error) {
	opts.defaults()
	cfg = rest.CopyConfig(cfg)
	// Listing every resource type warns about deprecated ones (Endpoints…)
	// that no layer uses; those warnings are noise here.
	cfg.WarningHandler = rest.NoWarnings{}
	cl, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	res, err := discover(cl.disc, opts.Logger)
	if err != nil {
		return nil, err
	}
	out := &DriftResult{Differences: []Difference{}}
	desired := map[string]bool{}
	type scope struct {
		m  Mapping
		ns string
	}
	scopes := map[string]scope{}
	scopeLayer := map[string]string{}
	var scopeKeys []string
	inventories := map[string]string{}
	for _, l := range layers {
		o := opts
		o.Inventory, o.Namespace = l.Inventory, l.Namespace
		o.defaults()
		work, _, err := prepare(l.Objects, res, o)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Name, err)
		}
		if l.Inventory != "" {
			inventories[l.Inventory] = l.Name
		}
		for _, w := range work {
			desired[objKey(w.mapping.GVK.GroupKind(), w.obj.GetNamespace(), w.obj.GetName())] = true
			sk := w.mapping.GVR().String() + "|" + w.obj.GetNamespace()
			if _, ok := scopes[sk]; !ok {
				scopes[sk] = scope{w.mapping, w.obj.GetNamespace()}
				scopeLayer[sk] = l.Name
				scopeKeys = append(scopeKeys, sk)
			}
			d, err := driftOf(ctx, cl, w, opts)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %s: %w", l.Name, w.result.Object, err)
			}
			out.Checked++
			if d != nil {
				d.Layer, d.Source = l.Name, w.result.Source
				out.Differences = append(out.Differences, *d)
			}
		}
	}

	seen := map[string]bool{}
	addIf := func(layer string, m Mapping, u *unstructured.Unstructured) {
		key := objKey(m.GVK.GroupKind(), u.GetNamespace(), u.GetName())
		if desired[key] || seen[key] || len(u.GetOwnerReferences()) > 0 || clusterMade(m, u) {
			return
		}
		seen[key] = true
		out.Differences = append(out.Differences, Difference{Layer: layer, Change: DriftAdded,
			Object:   ObjectRef{APIVersion: m.GVK.GroupVersion().String(), Kind: m.GVK.Kind, Namespace: u.GetNamespace(), Name: u.GetName()},
			Managers: handManagers(u)})
	}
	// Objects carrying one of the layers' inventory labels.
	if len(inventories) > 0 {
		names := make([]string, 0, len(inventories))
		for inv := range inventories {
			names = append(names, inv)
		}
		sort.Strings(names)
		sel := InventoryLabel + " in (" + strings.Join(names, ",") + ")"
		lists, err := cl.disc.ServerPreferredResources()
		if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
			return nil, fmt.Errorf("discovering resources: %w", err)
		}
		for _, l := range lists {
			gv, err := schema.ParseGroupVersion(l.GroupVersion)
			if err != nil {
				continue
			}
			for _, r := range l.APIResources {
				if strings.Contains(r.Name, "/") || !hasVerbs(r.Verbs, "list") || r.Kind == "Event" {
					continue
				}
				m := Mapping{GVK: gv.WithKind(r.Kind), Resource: r.Name, Namespaced: r.Namespaced}
				items, err := cl.dyn.Resource(m.GVR()).List(ctx, metav1.ListOptions{LabelSelector: sel})
				if err != nil {
					continue
				}
				for i := range items.Items {
					u := &items.Items[i]
					addIf(inventories[u.GetLabels()[InventoryLabel]], m, u)
				}
			}
		}
	}
	// Objects made by hand next to a layer's.
	for _, sk := range scopeKeys {
		sc := scopes[sk]
		list, err := cl.resource(sc.m, sc.ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for i := range list.Items {
			u := &list.Items[i]
			if _, labelled := u.GetLabels()[InventoryLabel]; labelled || systemMade(u) {
				continue
			}
			addIf(scopeLayer[sk], sc.m, u)
		}
	}
	return out, nil
}

// driftOf compares one object with what applying it now would make of it.
func driftOf(ctx context.Context, cl *clients, w *item, opts Options) (*Difference, error) {
	rc := cl.resource(w.mapping, w.obj.GetNamespace())
	live, err := rc.Get(ctx, w.obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &Difference{Change: DriftDeleted, Object: w.result.Object}, nil
	}
	if err != nil {
		return nil, err
	}
	want, err := rc.Apply(ctx, w.obj.GetName(), w.obj, metav1.ApplyOptions{
		FieldManager: opts.FieldManager, Force: true, DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return nil, fmt.Errorf("dry-run apply: %w", err)
	}
	var fields []FieldChange
	diffValues("", driftView(live.Object), driftView(want.Object), &fields)
	if len(fields) == 0 {
		return nil, nil
	}
	if len(fields) > maxFields {
		fields = fields[:maxFields]
	}
	return &Difference{Change: DriftChanged, Object: w.result.Object, Fields: fields, Managers: handManagers(live)}, nil
}

// driftView drops what changes without anyone editing the object: its
// status, server bookkeeping and managed fields.
func driftView(obj map[string]any) map[string]any {
	c := runtimeDeepCopy(obj)
	delete(c, "status")
	if md, ok := c["metadata"].(map[string]any); ok {
		for _, k := range []string{"managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"} {
			delete(md, k)
		}
	}
	return c
}

func runtimeDeepCopy(m map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

// diffValues appends the paths where live and want differ.
func diffValues(path string, live, want any, out *[]FieldChange) {
	if len(*out) > maxFields {
		return
	}
	lm, lok := live.(map[string]any)
	wm, wok := want.(map[string]any)
	if lok && wok {
		keys := map[string]bool{}
		for k := range lm {
			keys[k] = true
		}
		for k := range wm {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			diffValues(joinPath(path, k), lm[k], wm[k], out)
		}
		return
	}
	ll, lok := live.([]any)
	wl, wok := want.([]any)
	if lok && wok && len(ll) == len(wl) {
		for i := range ll {
			diffValues(path+"["+strconv.Itoa(i)+"]", ll[i], wl[i], out)
		}
		return
	}
	if !reflect.DeepEqual(live, want) {
		*out = append(*out, FieldChange{Path: path, Live: live, Want: want})
	}
}

func joinPath(path, key string) string {
	if strings.ContainsAny(key, ".[]") {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// systemMade: every field manager of u is k2 or the cluster's own. An
// object with no managed fields at all (nothing but a name) counts as made
// by hand.
func systemMade(u *unstructured.Unstructured) bool {
	return len(u.GetManagedFields()) > 0 && len(handManagers(u)) == 0
}

// handManagers are u's field managers that are neither k2 nor the
// cluster's own components: people and their tools (kubectl-edit,
// kubectl-patch, kubectl-client-side-apply…).
func handManagers(u *unstructured.Unstructured) []string {
	var out []string
	seen := map[string]bool{}
	for _, mf := range u.GetManagedFields() {
		m := mf.Manager
		if seen[m] || systemManager(m) {
			continue
		}
		seen[m] = true
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// clusterMade reports objects the cluster makes by itself next to the
// ones a layer applies: the CA bundle ConfigMap and default ServiceAccount
// of every namespace, the Endpoints mirroring a Service (with its labels),
// Helm's release records, leases and events.
func clusterMade(m Mapping, u *unstructured.Unstructured) bool {
	gk := m.GVK.GroupKind()
	switch {
	case gk.Group == "" && gk.Kind == "ConfigMap" && u.GetName() == "kube-root-ca.crt",
		gk.Group == "" && gk.Kind == "ServiceAccount" && u.GetName() == "default",
		gk.Group == "" && gk.Kind == "Endpoints",
		gk.Group == "" && gk.Kind == "Event", gk.Group == "events.k8s.io",
		gk.Group == "coordination.k8s.io" && gk.Kind == "Lease":
		return true
	case gk.Group == "" && gk.Kind == "Secret":
		t, _, _ := unstructured.NestedString(u.Object, "type")
		return t == "helm.sh/release.v1"
	}
	return false
}

func systemManager(m string) bool {
	return m == DefaultFieldManager || strings.HasPrefix(m, "k2-") || strings.HasPrefix(m, "kube-") ||
		m == "kubelet" || m == "helm"
}
