package apply

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Readiness reports whether a live object is ready, why not, and whether
// it has failed for good (a failed Job). Kinds without a notion of
// readiness are ready once they exist.
func Readiness(u *unstructured.Unstructured) (ready bool, status string, failed bool) {
	gvk := u.GroupVersionKind()
	gen, _ := number(u.Object, "metadata", "generation")
	observed, hasObserved := number(u.Object, "status", "observedGeneration")
	stale := hasObserved && observed < gen || !hasObserved && gen > 0 && needsObserved(gvk.Kind)
	switch {
	case gvk.Group == "apps" && gvk.Kind == "Deployment":
		if stale {
			return false, "waiting for the deployment controller to observe the new spec", false
		}
		want := replicas(u)
		updated := statusInt(u, "updatedReplicas")
		avail := statusInt(u, "availableReplicas")
		if c, ok := condition(u, "Progressing"); ok && c.status == "False" {
			return false, fmt.Sprintf("%s: %s", c.reason, c.message), c.reason == "ProgressDeadlineExceeded"
		}
		if updated < want || avail < want {
			return false, fmt.Sprintf("%d/%d replicas updated, %d available", updated, want, avail), false
		}
		return true, fmt.Sprintf("%d/%d available", avail, want), false
	case gvk.Group == "apps" && gvk.Kind == "StatefulSet":
		if stale {
			return false, "waiting for the statefulset controller to observe the new spec", false
		}
		want, ready := replicas(u), statusInt(u, "readyReplicas")
		if ready < want {
			return false, fmt.Sprintf("%d/%d replicas ready", ready, want), false
		}
		return true, fmt.Sprintf("%d/%d ready", ready, want), false
	case gvk.Group == "apps" && gvk.Kind == "DaemonSet":
		if stale {
			return false, "waiting for the daemonset controller to observe the new spec", false
		}
		want, ready := statusInt(u, "desiredNumberScheduled"), statusInt(u, "numberReady")
		if ready < want || statusInt(u, "updatedNumberScheduled") < want {
			return false, fmt.Sprintf("%d/%d pods ready", ready, want), false
		}
		return true, fmt.Sprintf("%d/%d ready", ready, want), false
	case gvk.Group == "batch" && gvk.Kind == "Job":
		if c, ok := condition(u, "Failed"); ok && c.status == "True" {
			return false, fmt.Sprintf("failed: %s: %s", c.reason, c.message), true
		}
		if c, ok := condition(u, "Complete"); ok && c.status == "True" {
			return true, "complete", false
		}
		return false, fmt.Sprintf("%d succeeded, %d active", statusInt(u, "succeeded"), statusInt(u, "active")), false
	case gvk.Group == "k2.dev" && gvk.Kind == "App":
		if stale {
			return false, "waiting for the App controller to observe the new spec (it runs in k2 server)", false
		}
		c, ok := condition(u, "Ready")
		if !ok {
			return false, "no Ready condition yet (is k2 server's App controller running?)", false
		}
		if c.status != "True" {
			return false, fmt.Sprintf("%s: %s", c.reason, c.message), false
		}
		return true, "ready", false
	case gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition":
		if c, ok := condition(u, "Established"); ok && c.status == "True" {
			return true, "established", false
		}
		return false, "not established yet", false
	case gvk.Group == "" && gvk.Kind == "Pod":
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		if phase == "Succeeded" {
			return true, "succeeded", false
		}
		if phase == "Failed" {
			return false, "failed", true
		}
		if c, ok := condition(u, "Ready"); ok && c.status == "True" {
			return true, "ready", false
		}
		return false, "phase " + orDash(phase), false
	}
	return true, "", false
}

// hasReadiness reports whether Readiness knows a notion of ready for gvk
// beyond existing.
func hasReadiness(gvk schema.GroupVersionKind) bool {
	switch gvk.GroupKind().String() {
	case "Deployment.apps", "StatefulSet.apps", "DaemonSet.apps", "Job.batch", "App.k2.dev",
		"CustomResourceDefinition.apiextensions.k8s.io", "Pod":
		return true
	}
	return false
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func needsObserved(kind string) bool {
	switch kind {
	case "Deployment", "StatefulSet", "DaemonSet", "App":
		return true
	}
	return false
}

func replicas(u *unstructured.Unstructured) int64 {
	n, ok := number(u.Object, "spec", "replicas")
	if !ok {
		return 1
	}
	return n
}

func statusInt(u *unstructured.Unstructured, field string) int64 {
	n, _ := number(u.Object, "status", field)
	return n
}

// number reads an integer field whether it was decoded as int64 (the
// dynamic client), int or float64 (a YAML or JSON decoder into any).
func number(obj map[string]any, fields ...string) (int64, bool) {
	v, ok, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	if !ok {
		return 0, false
	}
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

type cond struct{ status, reason, message string }

func condition(u *unstructured.Unstructured, typ string) (cond, bool) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return cond{s, r, msg}, true
		}
	}
	return cond{}, false
}

func waitEstablished(ctx context.Context, cl *clients, work []*item, idx []int) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for _, i := range idx {
		w := work[i]
		err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			u, err := cl.resource(w.mapping, "").Get(ctx, w.obj.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, nil //nolint:nilerr // retried until the timeout
			}
			ok, _, _ := Readiness(u)
			return ok, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for CustomResourceDefinition %s to be established: %w", w.obj.GetName(), err)
		}
	}
	return nil
}
