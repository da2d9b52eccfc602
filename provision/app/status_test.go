package app_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"k2.dev/k2/provision/app"
)

func deployment(gen, observed, replicas, updated, available int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "web", "generation": gen},
		"spec":     map[string]any{"replicas": replicas},
		"status":   map[string]any{"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available},
	}}
}

func TestRollup(t *testing.T) {
	t.Parallel()
	a := &app.App{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Generation: 3},
		Spec: app.Spec{Image: "nginx", Ports: []app.Port{app.IntPort(80)}}}
	tests := []struct {
		name     string
		children map[string]*unstructured.Unstructured
		err      *app.LastError
		status   metav1.ConditionStatus
		reason   string
		replicas string
	}{
		{"no workload yet", nil, nil, metav1.ConditionFalse, app.ReasonProgressing, "0/0"},
		{"not observed", map[string]*unstructured.Unstructured{"Deployment": deployment(2, 1, 2, 2, 2)}, nil, metav1.ConditionFalse, app.ReasonProgressing, "2/2"},
		{"starting", map[string]*unstructured.Unstructured{"Deployment": deployment(2, 2, 2, 2, 1)}, nil, metav1.ConditionFalse, app.ReasonProgressing, "1/2"},
		{"ready", map[string]*unstructured.Unstructured{"Deployment": deployment(2, 2, 2, 2, 2)}, nil, metav1.ConditionTrue, app.ReasonAvailable, "2/2"},
		{"apply failed", map[string]*unstructured.Unstructured{"Deployment": deployment(2, 2, 2, 2, 2)},
			&app.LastError{Object: "Service/web", Message: "boom"}, metav1.ConditionFalse, app.ReasonApplyFailed, "2/2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := app.Rollup(a, tt.children, tt.err)
			c := meta.FindStatusCondition(s.Conditions, app.ConditionReady)
			if c == nil || c.Status != tt.status || c.Reason != tt.reason {
				t.Fatalf("Ready = %+v, want %s/%s", c, tt.status, tt.reason)
			}
			if s.Replicas != tt.replicas || s.URL != "http://web.default.svc:80" || s.ObservedGeneration != 3 {
				t.Errorf("status = %+v", s)
			}
			if (tt.err != nil) != (s.LastError != nil) {
				t.Errorf("lastError = %v", s.LastError)
			}
		})
	}
}
