package apply_test

import (
	"testing"

	"sigs.k8s.io/yaml"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"k2.dev/k2/provision/apply"
)

func TestReadiness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, obj     string
		ready, failed bool
		status        string
	}{
		{"configmap", `{apiVersion: v1, kind: ConfigMap}`, true, false, ""},
		{"deployment not observed", `{apiVersion: apps/v1, kind: Deployment, metadata: {generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 1}}`,
			false, false, "waiting for the deployment controller to observe the new spec"},
		{"deployment rolling", `{apiVersion: apps/v1, kind: Deployment, metadata: {generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 2, updatedReplicas: 2, availableReplicas: 1}}`,
			false, false, "2/2 replicas updated, 1 available"},
		{"deployment available", `{apiVersion: apps/v1, kind: Deployment, metadata: {generation: 2}, spec: {replicas: 2}, status: {observedGeneration: 2, updatedReplicas: 2, availableReplicas: 2}}`,
			true, false, "2/2 available"},
		{"deployment stuck", `{apiVersion: apps/v1, kind: Deployment, metadata: {generation: 1}, status: {observedGeneration: 1, conditions: [{type: Progressing, status: "False", reason: ProgressDeadlineExceeded, message: too slow}]}}`,
			false, true, "ProgressDeadlineExceeded: too slow"},
		{"statefulset", `{apiVersion: apps/v1, kind: StatefulSet, metadata: {generation: 1}, spec: {replicas: 3}, status: {observedGeneration: 1, readyReplicas: 3}}`,
			true, false, "3/3 ready"},
		{"job running", `{apiVersion: batch/v1, kind: Job, status: {active: 1}}`, false, false, "0 succeeded, 1 active"},
		{"job complete", `{apiVersion: batch/v1, kind: Job, status: {conditions: [{type: Complete, status: "True"}]}}`, true, false, "complete"},
		{"job failed", `{apiVersion: batch/v1, kind: Job, status: {conditions: [{type: Failed, status: "True", reason: BackoffLimitExceeded, message: gave up}]}}`,
			false, true, "failed: BackoffLimitExceeded: gave up"},
		{"app ready", `{apiVersion: k2.dev/v1, kind: App, metadata: {generation: 1}, status: {observedGeneration: 1, conditions: [{type: Ready, status: "True"}]}}`, true, false, "ready"},
		{"app not ready", `{apiVersion: k2.dev/v1, kind: App, metadata: {generation: 1}, status: {observedGeneration: 1, conditions: [{type: Ready, status: "False", reason: Progressing, message: 0/2 replicas ready}]}}`,
			false, false, "Progressing: 0/2 replicas ready"},
		{"app without controller", `{apiVersion: k2.dev/v1, kind: App, metadata: {generation: 1}}`, false, false, "waiting for the App controller to observe the new spec (it runs in k2 server)"},
		{"crd", `{apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, status: {conditions: [{type: Established, status: "True"}]}}`, true, false, "established"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(tt.obj), &u.Object); err != nil {
				t.Fatal(err)
			}
			ready, status, failed := apply.Readiness(u)
			if ready != tt.ready || failed != tt.failed || status != tt.status {
				t.Errorf("Readiness = %v, %q, %v; want %v, %q, %v", ready, status, failed, tt.ready, tt.status, tt.failed)
			}
		})
	}
}
