package integration

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/provision/apply"
)

// managedAPIVersion is the apiVersion the k2 field manager applied the
// object with, as the server recorded it.
func managedAPIVersion(t *testing.T, gvr schema.GroupVersionResource, ns, name string) string {
	t.Helper()
	u, err := dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range u.GetManagedFields() {
		if mf.Manager == apply.DefaultFieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			return mf.APIVersion
		}
	}
	return ""
}

// TestApplyVersionless applies Deployment, Service, ConfigMap and App
// without apiVersion and checks each was sent and stored as its stable
// version.
func TestApplyVersionless(t *testing.T) {
	ns := namespace(t, "versionless")
	res := applyYAML(t, ns, testutil.Fixture("versionless.yaml")+`---
kind: App
metadata: {name: shop}
spec: {image: registry.local/shop:v1, ports: [8080]}
`, apply.Options{})
	want := map[string]schema.GroupVersionResource{
		"ConfigMap/settings": {Version: "v1", Resource: "configmaps"},
		"Deployment/api":     {Group: "apps", Version: "v1", Resource: "deployments"},
		"Service/api":        {Version: "v1", Resource: "services"},
		"App/shop":           {Group: "k2.dev", Version: "v1", Resource: "apps"},
	}
	for _, r := range res.Objects {
		key := r.Object.Kind + "/" + r.Object.Name
		gvr := want[key]
		if !r.Versionless || r.Object.APIVersion != gvr.GroupVersion().String() || r.Action != apply.ActionCreated || r.Object.Namespace != ns {
			t.Errorf("%s: result %+v, want versionless %s created in %s", key, r, gvr.GroupVersion(), ns)
		}
		if got := managedAPIVersion(t, gvr, ns, r.Object.Name); got != gvr.GroupVersion().String() {
			t.Errorf("%s: stored by manager k2 as %q, want %s", key, got, gvr.GroupVersion())
		}
	}
	// Applying the same set again changes nothing.
	res = applyYAML(t, ns, `
kind: ConfigMap
metadata: {name: settings}
data: {mode: prod}
`, apply.Options{})
	if a := res.Objects[0].Action; a != apply.ActionUnchanged {
		t.Errorf("re-apply: action %s, want unchanged", a)
	}
}

// TestApplyBetaOnlyRefused installs a CRD served only as v1beta1 and
// checks that its objects are refused, clearly and before anything is
// applied, unless AllowBeta.
func TestApplyBetaOnlyRefused(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "beta-only")
	applyYAML(t, ns, `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.beta.example.com}
spec:
  group: beta.example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions:
  - name: v1beta1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`, apply.Options{Wait: true, Timeout: 30 * time.Second})

	set := `
kind: ConfigMap
metadata: {name: innocent}
---
kind: Widget
metadata: {name: w1}
`
	objs, err := apply.Decode(strings.NewReader(set), "set.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = apply.Apply(ctx, restCfg, objs, apply.Options{Namespace: ns})
	var refused *apply.RefusedError
	if !errors.As(err, &refused) || !errors.Is(err, apply.ErrBetaOnly) {
		t.Fatalf("Apply = %v, want a RefusedError wrapping ErrBetaOnly", err)
	}
	for _, w := range []string{"set.yaml:5", "Widget", "beta.example.com/v1beta1", "--allow-beta", "nothing was applied"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "innocent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ConfigMap of a refused set was applied: %v", err)
	}
	// Explicitly beta: refused too.
	objs, _ = apply.Decode(strings.NewReader("apiVersion: beta.example.com/v1beta1\nkind: Widget\nmetadata: {name: w2}\n"), "explicit.yaml")
	if _, err := apply.Apply(ctx, restCfg, objs, apply.Options{Namespace: ns}); !errors.Is(err, apply.ErrUnstableAPI) {
		t.Errorf("explicit v1beta1: err = %v, want ErrUnstableAPI", err)
	}
	// With AllowBeta it goes through, to v1beta1.
	objs, _ = apply.Decode(strings.NewReader(set), "set.yaml")
	res, err := apply.Apply(ctx, restCfg, objs, apply.Options{Namespace: ns, AllowBeta: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Objects[1].Object.APIVersion; got != "beta.example.com/v1beta1" {
		t.Errorf("with AllowBeta: Widget applied as %s", got)
	}
}

// TestApplyCRDAndObjectsTogether applies a CRD and objects of its kind in
// one set, in the wrong order and versionless: CRDs go first.
func TestApplyCRDAndObjectsTogether(t *testing.T) {
	ns := namespace(t, "crd-together")
	res := applyYAML(t, ns, `
kind: Thing
metadata: {name: t1}
spec: {size: 3}
---
kind: Namespace
metadata: {name: crd-together-extra}
---
kind: CustomResourceDefinition
metadata: {name: things.stable.example.com}
spec:
  group: stable.example.com
  scope: Namespaced
  names: {kind: Thing, plural: things}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`, apply.Options{})
	t.Cleanup(func() {
		_ = kube.CoreV1().Namespaces().Delete(context.Background(), "crd-together-extra", metav1.DeleteOptions{})
	})
	if got := res.Objects[0].Object.APIVersion; got != "stable.example.com/v1" {
		t.Errorf("Thing resolved to %s, want stable.example.com/v1", got)
	}
	for _, r := range res.Objects {
		if r.Action != apply.ActionCreated {
			t.Errorf("%s: %s %s", r.Object, r.Action, r.Error)
		}
	}
}

// TestApplyPrune applies a set with an inventory, then a smaller one with
// Prune: what left the set is deleted, what stayed is kept.
func TestApplyPrune(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "prune")
	applyYAML(t, ns, `
kind: ConfigMap
metadata: {name: keep}
---
kind: ConfigMap
metadata: {name: drop}
---
kind: Service
metadata: {name: drop}
spec: {ports: [{port: 80}]}
`, apply.Options{Inventory: "prune-test"})
	res := applyYAML(t, ns, `
kind: ConfigMap
metadata: {name: keep}
`, apply.Options{Inventory: "prune-test", Prune: true})
	var pruned []string
	for _, p := range res.Pruned {
		pruned = append(pruned, p.Kind+"/"+p.Name)
	}
	if got := strings.Join(pruned, ","); got != "ConfigMap/drop,Service/drop" && got != "Service/drop,ConfigMap/drop" {
		t.Errorf("pruned %s, want ConfigMap/drop and Service/drop", got)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "keep", metav1.GetOptions{}); err != nil {
		t.Errorf("keep: %v", err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Get(ctx, "drop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("drop still there: %v", err)
	}
}

// TestApplyWaitReportsWhy waits for a Deployment that cannot become
// available (no nodes here) and checks the report says what and why.
func TestApplyWaitReportsWhy(t *testing.T) {
	ns := namespace(t, "wait")
	objs, _ := apply.Decode(strings.NewReader(`
kind: Deployment
metadata: {name: stuck}
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec: {containers: [{name: c, image: registry.local/stuck:v1}]}
---
kind: ConfigMap
metadata: {name: fine}
`), "wait.yaml")
	res, err := apply.Apply(context.Background(), restCfg, objs, apply.Options{Namespace: ns, Wait: true, Timeout: 5 * time.Second})
	var nr *apply.NotReadyError
	if !errors.As(err, &nr) || !errors.Is(err, apply.ErrNotReady) {
		t.Fatalf("Apply = %v, want a NotReadyError", err)
	}
	if len(nr.Objects) != 1 || nr.Objects[0].Object.Name != "stuck" || !strings.Contains(nr.Objects[0].Status, "0 available") {
		t.Errorf("not ready = %+v", nr.Objects)
	}
	if r := res.Objects[1]; r.Ready == nil || !*r.Ready {
		t.Errorf("ConfigMap readiness = %+v", r)
	}
	t.Logf("report:\n%v", err)
	if !strings.Contains(fmt.Sprint(nr.Objects[0].Events), "FailedScheduling") && !strings.Contains(fmt.Sprint(nr.Objects[0].Events), "ScalingReplicaSet") {
		t.Errorf("no explanatory events: %v", nr.Objects[0].Events)
	}
}

// TestResolverOnRealServer checks versionless resolution against the
// server's real discovery.
func TestResolverOnRealServer(t *testing.T) {
	res, err := apply.Discover(restCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for kind, want := range map[string]string{
		"Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "App": "k2.dev/v1",
		"HorizontalPodAutoscaler": "autoscaling/v2", "CronJob": "batch/v1", "PodDisruptionBudget": "policy/v1",
		"Ingress": "networking.k8s.io/v1", "CustomResourceDefinition": "apiextensions.k8s.io/v1",
	} {
		m, err := res.Resolve("", kind, false)
		if err != nil || m.GVK.GroupVersion().String() != want {
			t.Errorf("Resolve(%s) = %v, %v; want %s", kind, m.GVK, err, want)
		}
	}
	if _, err := res.Resolve("", "Event", false); !errors.Is(err, apply.ErrAmbiguousKind) {
		t.Errorf("Event: err = %v, want ErrAmbiguousKind (core and events.k8s.io)", err)
	}
	if m, err := res.Resolve("events.k8s.io", "Event", false); err != nil || m.GVK.Version != "v1" {
		t.Errorf("group-only Event = %v, %v", m, err)
	}
	if _, err := res.Resolve("policy/v1beta1", "PodDisruptionBudget", false); !errors.Is(err, apply.ErrUnstableAPI) {
		t.Errorf("policy/v1beta1: err = %v", err)
	}
}

// TestApplyMissingNamespaceFailsFast checks that an object in a namespace
// that does not exist fails at once, naming the object, and that the
// other objects of the phase are still applied.
func TestApplyMissingNamespaceFailsFast(t *testing.T) {
	ns := namespace(t, "missing-ns")
	objs, _ := apply.Decode(strings.NewReader("kind: ConfigMap\nmetadata: {name: lost, namespace: no-such-ns}\n---\nkind: ConfigMap\nmetadata: {name: found}\n"), "ns.yaml")
	start := time.Now()
	res, err := apply.Apply(context.Background(), restCfg, objs, apply.Options{Namespace: ns})
	var oe *apply.ObjectError
	if !errors.As(err, &oe) || oe.Object.Name != "lost" || !strings.Contains(err.Error(), "ns.yaml:1") {
		t.Fatalf("Apply = %v, want an ObjectError for ConfigMap lost at ns.yaml:1", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to report a missing namespace", d)
	}
	if res.Objects[0].Action != apply.ActionFailed || res.Objects[1].Action != apply.ActionCreated {
		t.Errorf("actions = %s, %s", res.Objects[0].Action, res.Objects[1].Action)
	}
}
