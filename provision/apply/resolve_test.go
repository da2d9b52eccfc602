package apply_test

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k2.dev/k2/provision/apply"
)

// discoveryData is a slice of what a real API server's discovery returns,
// plus two made-up groups: one served only as beta/alpha and one whose
// preferred version is beta while a stable one exists.
func discoveryData() ([]*metav1.APIGroup, []*metav1.APIResourceList) {
	group := func(name string, versions ...string) *metav1.APIGroup {
		g := &metav1.APIGroup{Name: name}
		for _, v := range versions {
			gv := v
			if name != "" {
				gv = name + "/" + v
			}
			g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: v})
		}
		g.PreferredVersion = g.Versions[0]
		return g
	}
	res := func(gv string, rs ...metav1.APIResource) *metav1.APIResourceList {
		return &metav1.APIResourceList{GroupVersion: gv, APIResources: rs}
	}
	r := func(name, kind string, namespaced bool) metav1.APIResource {
		return metav1.APIResource{Name: name, Kind: kind, Namespaced: namespaced, Verbs: metav1.Verbs{"get", "list", "delete", "patch"}}
	}
	groups := []*metav1.APIGroup{
		group("", "v1"),
		group("apps", "v1"),
		group("events.k8s.io", "v1"),
		group("policy", "v1"),
		group("autoscaling", "v2", "v1"),
		group("beta.example.com", "v1beta1", "v1alpha1"),
		group("mixed.example.com", "v2beta1", "v1"),
		group("k2.dev", "v1"),
	}
	lists := []*metav1.APIResourceList{
		res("v1", r("configmaps", "ConfigMap", true), r("services", "Service", true), r("namespaces", "Namespace", false),
			r("events", "Event", true), r("pods", "Pod", true), r("pods/status", "Pod", true)),
		res("apps/v1", r("deployments", "Deployment", true), r("statefulsets", "StatefulSet", true)),
		res("events.k8s.io/v1", r("events", "Event", true)),
		res("policy/v1", r("poddisruptionbudgets", "PodDisruptionBudget", true)),
		res("autoscaling/v2", r("horizontalpodautoscalers", "HorizontalPodAutoscaler", true)),
		res("autoscaling/v1", r("horizontalpodautoscalers", "HorizontalPodAutoscaler", true)),
		res("beta.example.com/v1beta1", r("widgets", "Widget", false)),
		res("beta.example.com/v1alpha1", r("widgets", "Widget", false)),
		res("mixed.example.com/v2beta1", r("gadgets", "Gadget", true)),
		res("mixed.example.com/v1", r("gadgets", "Gadget", true)),
		res("k2.dev/v1", r("apps", "App", true)),
	}
	return groups, lists
}

func TestResolve(t *testing.T) {
	t.Parallel()
	res := apply.NewResolver(discoveryData())
	tests := []struct {
		apiVersion, kind string
		allowBeta        bool
		want             string // group/version, resource
		wantErr          error
		wantMsg          []string
	}{
		{"", "Deployment", false, "apps/v1 deployments", nil, nil},
		{"", "ConfigMap", false, "v1 configmaps", nil, nil},
		{"", "Service", false, "v1 services", nil, nil},
		{"", "App", false, "k2.dev/v1 apps", nil, nil},
		{"", "HorizontalPodAutoscaler", false, "autoscaling/v2 horizontalpodautoscalers", nil, nil},
		{"", "Gadget", false, "mixed.example.com/v1 gadgets", nil, nil},
		{"", "Gadget", true, "mixed.example.com/v1 gadgets", nil, nil},
		{"apps/v1", "Deployment", false, "apps/v1 deployments", nil, nil},
		{"autoscaling/v1", "HorizontalPodAutoscaler", false, "autoscaling/v1 horizontalpodautoscalers", nil, nil},
		{"events.k8s.io", "Event", false, "events.k8s.io/v1 events", nil, nil},
		{"", "Widget", false, "", apply.ErrBetaOnly, []string{"beta.example.com/v1beta1, beta.example.com/v1alpha1", "--allow-beta"}},
		{"", "Widget", true, "beta.example.com/v1beta1 widgets", nil, nil},
		{"beta.example.com/v1alpha1", "Widget", true, "beta.example.com/v1alpha1 widgets", nil, nil},
		{"beta.example.com/v1beta1", "Widget", false, "", apply.ErrUnstableAPI, []string{"is beta", "no stable version", "--allow-beta"}},
		{"mixed.example.com/v2beta1", "Gadget", false, "", apply.ErrUnstableAPI, []string{"use apiVersion: mixed.example.com/v1"}},
		{"policy/v1beta1", "PodDisruptionBudget", false, "", apply.ErrUnstableAPI, []string{"use apiVersion: policy/v1", "removed in Kubernetes 1.25"}},
		{"policy/v1beta1", "PodDisruptionBudget", true, "", apply.ErrUnknownKind, []string{"does not serve policy/v1beta1", "policy/v1"}},
		{"", "Event", false, "", apply.ErrAmbiguousKind, []string{"core, events.k8s.io", "apiVersion: v1 | apiVersion: events.k8s.io/v1", "(e.g. apiVersion: events.k8s.io)"}},
		{"", "Deploymnet", false, "", apply.ErrUnknownKind, []string{`no kind "Deploymnet"`}},
		{"", "deployment", false, "", apply.ErrUnknownKind, []string{"did you mean Deployment?"}},
		{"apps/v2", "Deployment", false, "", apply.ErrUnknownKind, []string{"use apiVersion: apps/v1"}},
		{"", "", false, "", apply.ErrInvalidObject, nil},
		{"example.com/v1", "Gadget", true, "", apply.ErrUnknownKind, []string{"does not serve example.com/v1 Gadget"}},
	}
	for _, tt := range tests {
		t.Run(tt.apiVersion+" "+tt.kind, func(t *testing.T) {
			m, err := res.Resolve(tt.apiVersion, tt.kind, tt.allowBeta)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve = %v, %v; want %v", m, err, tt.wantErr)
				}
				for _, w := range tt.wantMsg {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := m.GVK.GroupVersion().String() + " " + m.Resource; got != tt.want {
				t.Errorf("Resolve = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestResolveCRDInSet(t *testing.T) {
	t.Parallel()
	res := apply.NewResolver(discoveryData())
	res.AddCRD(map[string]any{"spec": map[string]any{
		"group": "stable.example.com", "scope": "Cluster",
		"names": map[string]any{"kind": "Thing", "plural": "things"},
		"versions": []any{
			map[string]any{"name": "v1beta1", "served": true},
			map[string]any{"name": "v1", "served": true},
			map[string]any{"name": "v2", "served": false},
		},
	}})
	m, err := res.Resolve("", "Thing", false)
	if err != nil {
		t.Fatal(err)
	}
	if m.GVK.Version != "v1" || m.Namespaced || m.Resource != "things" {
		t.Errorf("Resolve = %+v, want stable.example.com/v1 things, cluster-scoped", m)
	}
	if _, err := res.Resolve("stable.example.com/v2", "Thing", false); !errors.Is(err, apply.ErrUnknownKind) {
		t.Errorf("unserved v2: err = %v, want ErrUnknownKind", err)
	}
}

func TestVersionStability(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]apply.Stability{
		"v1": apply.Stable, "v2": apply.Stable, "v10": apply.Stable,
		"v1beta1": apply.Beta, "v2beta2": apply.Beta,
		"v1alpha1": apply.Alpha, "v1alpha": apply.Alpha, "latest": apply.Alpha, "v0": apply.Alpha,
	} {
		if got := apply.VersionStability(v); got != want {
			t.Errorf("VersionStability(%q) = %s, want %s", v, got, want)
		}
	}
}
