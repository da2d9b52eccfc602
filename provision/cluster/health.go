package cluster

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/state"
)

// Health is whether an environment is healthy and since when: what a
// promotion's health gate asks of the source environment.
type Health struct {
	Env     string `json:"env"`
	Healthy bool   `json:"healthy"`
	// Since is when it last became healthy: the latest of its last
	// deployment's end, every node's Ready transition and every App's
	// Ready transition (all of them Ready now). Zero when not healthy.
	Since time.Time `json:"since,omitzero"`
	// For is how long it has been healthy at the time of the check.
	For      time.Duration `json:"for,omitempty"`
	Problems []string      `json:"problems,omitempty"`
}

// GetHealth checks env as `k2 status` does (last deployment succeeded,
// every node Ready, every App Ready) and derives since when it has been
// healthy from the cluster's own condition transition times, so no k2
// process needs to have watched it.
func GetHealth(ctx context.Context, s *state.Store, home, env string, now time.Time) (*Health, error) {
	st, err := GetStatus(ctx, s, home, env)
	if err != nil {
		return nil, err
	}
	h := &Health{Env: env, Problems: st.Problems}
	if !st.Healthy {
		return h, nil
	}
	since := st.Last.FinishedAt
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(home, env))
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		h.Problems = append(h.Problems, "control plane unreachable: "+err.Error())
		return h, nil
	}
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.LastTransitionTime.After(since) {
				since = c.LastTransitionTime.Time
			}
		}
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	apps, err := dc.Resource(schema.GroupVersionResource{Group: "k2.dev", Version: "v1", Resource: "apps"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		h.Problems = append(h.Problems, "listing apps: "+err.Error())
		return h, nil
	}
	for _, a := range apps.Items {
		conds, _, _ := unstructured.NestedSlice(a.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] != "Ready" {
				continue
			}
			if t, err := time.Parse(time.RFC3339, fmt.Sprint(m["lastTransitionTime"])); err == nil && t.After(since) {
				since = t
			}
		}
	}
	h.Healthy, h.Since = true, since
	if d := now.Sub(since); d > 0 {
		h.For = d
	}
	return h, nil
}
