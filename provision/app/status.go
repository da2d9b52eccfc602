package app

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Reasons of the Ready condition.
const (
	ReasonAvailable   = "Available"   // every desired replica is ready
	ReasonProgressing = "Progressing" // replicas are starting or updating
	ReasonApplyFailed = "ApplyFailed" // a child could not be applied
	ReasonInvalidSpec = "InvalidSpec" // the spec cannot be rendered
	ReasonStalled     = "Stalled"     // the workload reports it cannot progress
)

// Rollup computes the App's status from its live children (keyed by kind)
// and the error of this reconcile (nil when every child applied). It keeps
// the condition transition times of prev.
func Rollup(a *App, children map[string]*unstructured.Unstructured, applyErr *LastError) Status {
	s := Status{ObservedGeneration: a.Generation, URL: URL(a), Conditions: append([]metav1.Condition(nil), a.Status.Conditions...)}
	ready := metav1.Condition{Type: ConditionReady, ObservedGeneration: a.Generation}
	wl := children["Deployment"]
	if wl == nil {
		wl = children["StatefulSet"]
	}
	if wl != nil {
		s.Workload = wl.GetKind() + "/" + wl.GetName()
		s.DesiredReplicas = int32(nested(wl, "spec", "replicas"))
		if _, ok, _ := unstructured.NestedInt64(wl.Object, "spec", "replicas"); !ok {
			s.DesiredReplicas = 1
		}
		if wl.GetKind() == "Deployment" {
			s.ReadyReplicas = int32(nested(wl, "status", "availableReplicas"))
		} else {
			s.ReadyReplicas = int32(nested(wl, "status", "readyReplicas"))
		}
	}
	if as := a.Spec.Autoscale; as != nil {
		if hpa := children["HorizontalPodAutoscaler"]; hpa != nil && nested(hpa, "status", "desiredReplicas") > 0 {
			s.DesiredReplicas = int32(nested(hpa, "status", "desiredReplicas"))
		} else if s.DesiredReplicas < as.Min {
			s.DesiredReplicas = as.Min
		}
	}
	s.Replicas = fmt.Sprintf("%d/%d", s.ReadyReplicas, s.DesiredReplicas)
	switch {
	case applyErr != nil:
		s.LastError = applyErr
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonApplyFailed
		if applyErr.Object == "App/"+a.Name {
			ready.Reason = ReasonInvalidSpec
		}
		ready.Message = applyErr.Object + ": " + applyErr.Message
	case wl == nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonProgressing, "waiting for the workload to be created"
	case nested(wl, "status", "observedGeneration") < wl.GetGeneration():
		ready.Status, ready.Reason = metav1.ConditionFalse, ReasonProgressing
		ready.Message = fmt.Sprintf("waiting for %s to observe the new spec", s.Workload)
	default:
		updated := int32(nested(wl, "status", "updatedReplicas"))
		if c := wlCondition(wl, "Progressing"); c != nil && c["status"] == "False" {
			ready.Status, ready.Reason = metav1.ConditionFalse, ReasonStalled
			ready.Message = fmt.Sprintf("%s: %v: %v", s.Workload, c["reason"], c["message"])
		} else if s.ReadyReplicas >= s.DesiredReplicas && updated >= s.DesiredReplicas {
			ready.Status, ready.Reason = metav1.ConditionTrue, ReasonAvailable
			ready.Message = fmt.Sprintf("%d/%d replicas ready", s.ReadyReplicas, s.DesiredReplicas)
		} else {
			ready.Status, ready.Reason = metav1.ConditionFalse, ReasonProgressing
			ready.Message = fmt.Sprintf("%d/%d replicas ready, %d updated", s.ReadyReplicas, s.DesiredReplicas, updated)
		}
	}
	if applyErr == nil {
		s.LastError = nil
	}
	meta.SetStatusCondition(&s.Conditions, ready)
	return s
}

func nested(u *unstructured.Unstructured, fields ...string) int64 {
	n, _, _ := unstructured.NestedInt64(u.Object, fields...)
	return n
}

func wlCondition(u *unstructured.Unstructured, typ string) map[string]any {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			return m
		}
	}
	return nil
}
