package integration

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"k2.dev/k2/provision/apply"
)

// TestDrift applies a layer, edits, deletes and adds objects with a client
// as a person would (its own field manager), and checks that Drift reports
// exactly those, each with the fields and the manager.
func TestDrift(t *testing.T) {
	ctx := context.Background()
	ns := namespace(t, "drift")
	const manifest = `
kind: ConfigMap
metadata: {name: settings}
data: {mode: prod, level: info}
---
kind: ConfigMap
metadata: {name: doomed}
data: {a: b}
---
kind: Service
metadata: {name: api}
spec: {selector: {app: api}, ports: [{port: 80}]}
`
	opts := apply.Options{Inventory: "dev.base", Prune: true}
	applyYAML(t, ns, manifest, opts)
	layer := func() []apply.LayerObjects {
		objs, err := apply.Decode(strings.NewReader(manifest), "base")
		if err != nil {
			t.Fatal(err)
		}
		return []apply.LayerObjects{{Name: "base", Inventory: "dev.base", Namespace: ns, Objects: objs}}
	}
	res, err := apply.Drift(ctx, restCfg, layer(), apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Checked != 3 || len(res.Differences) != 0 {
		t.Fatalf("right after applying: %+v", res)
	}

	by := metav1.PatchOptions{FieldManager: "kubectl-edit"}
	if _, err := kube.CoreV1().ConfigMaps(ns).Patch(ctx, "settings", types.MergePatchType, []byte(`{"data":{"mode":"debug"}}`), by); err != nil {
		t.Fatal(err)
	}
	// A label nobody's layer sets is not drift: applying would keep it.
	if _, err := kube.CoreV1().Services(ns).Patch(ctx, "api", types.MergePatchType, []byte(`{"metadata":{"labels":{"team":"x"}}}`), by); err != nil {
		t.Fatal(err)
	}
	if err := kube.CoreV1().ConfigMaps(ns).Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "by-hand"}, Data: map[string]string{"x": "y"}},
		metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	// Nothing but a name: no managed fields at all, still made by hand.
	if _, err := kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bare"}},
		metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	res, err = apply.Drift(ctx, restCfg, layer(), apply.Options{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Layer, Change, Object, Fields, Managers string }
	var got []row
	for _, d := range res.Differences {
		var f []string
		for _, fc := range d.Fields {
			f = append(f, fc.Path+"="+fc.Live.(string)+"->"+fc.Want.(string))
		}
		got = append(got, row{d.Layer, d.Change, d.Object.Kind + "/" + d.Object.Name, strings.Join(f, ","), strings.Join(d.Managers, ",")})
	}
	want := []row{
		{"base", apply.DriftChanged, "ConfigMap/settings", "data.mode=debug->prod", "kubectl-edit"},
		{"base", apply.DriftDeleted, "ConfigMap/doomed", "", ""},
		{"base", apply.DriftAdded, "ConfigMap/bare", "", ""},
		{"base", apply.DriftAdded, "ConfigMap/by-hand", "", "kubectl-create"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("differences (-want +got):\n%s", diff)
	}
	// kube-root-ca.crt, made by the controller manager in every namespace,
	// is not "added by hand".
	for _, d := range res.Differences {
		if d.Object.Name == "kube-root-ca.crt" {
			t.Errorf("system object reported: %+v", d)
		}
	}
}
