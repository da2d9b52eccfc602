package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// prune deletes the objects labelled with opts.Inventory that work does not
// hold: first ordinary objects, then Namespaces, then CRDs (so nothing is
// orphaned halfway). Objects owned by another object (an App's children,
// say) are left to their owner.
func prune(ctx context.Context, cl *clients, work []*item, opts Options) ([]ObjectRef, error) {
	keep := map[string]bool{}
	for _, w := range work {
		keep[objKey(w.mapping.GVK.GroupKind(), w.obj.GetNamespace(), w.obj.GetName())] = true
	}
	lists, err := cl.disc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("pruning: discovering resources: %w", err)
	}
	type victim struct {
		ref     ObjectRef
		mapping Mapping
	}
	phases := [3][]victim{}
	seen := map[string]bool{}
	selector := InventoryLabel + "=" + opts.Inventory
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !hasVerbs(r.Verbs, "list", "delete") {
				continue
			}
			if gv.Group == "events.k8s.io" || (gv.Group == "" && r.Kind == "Event") {
				continue
			}
			m := Mapping{GVK: gv.WithKind(r.Kind), Resource: r.Name, Namespaced: r.Namespaced}
			items, err := cl.dyn.Resource(m.GVR()).List(ctx, metav1.ListOptions{LabelSelector: selector})
			if err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) || apierrors.IsForbidden(err) {
					continue
				}
				return nil, fmt.Errorf("pruning: listing %s: %w", m.GVR(), err)
			}
			for _, u := range items.Items {
				if seen[string(u.GetUID())] || len(u.GetOwnerReferences()) > 0 {
					continue
				}
				seen[string(u.GetUID())] = true
				if keep[objKey(m.GVK.GroupKind(), u.GetNamespace(), u.GetName())] {
					continue
				}
				v := victim{ObjectRef{APIVersion: gv.String(), Kind: r.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}, m}
				p := phaseOf(m.GVK)
				phases[2-p] = append(phases[2-p], v) // reverse of apply order
			}
		}
	}
	var pruned []ObjectRef
	var errs []error
	bg := metav1.DeletePropagationBackground
	for _, vs := range phases {
		for _, v := range vs {
			err := cl.resource(v.mapping, v.ref.Namespace).Delete(ctx, v.ref.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("pruning %s: %w", v.ref, err))
				continue
			}
			opts.Logger.Info("pruned", "object", v.ref.String())
			pruned = append(pruned, v.ref)
		}
	}
	return pruned, errors.Join(errs...)
}

func hasVerbs(have metav1.Verbs, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			if h == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
