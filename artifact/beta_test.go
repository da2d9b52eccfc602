package artifact_test

import (
	"errors"
	"strings"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
)

func TestStableOnly(t *testing.T) {
	betaChart := packChart(t, "legacy", "0.1.0", map[string]string{
		"templates/cronjob.yaml": "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: {{ .Release.Name }}-nightly\n",
		"templates/cm.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n",
	})
	repoURL := serveChartRepo(t, betaChart)
	files := map[string]string{
		"K8sfile":         "FROM scratch\nADD ./m\nINSTALL " + repoURL + "#legacy\n",
		"m/ok.yaml":       "kind: ConfigMap\nmetadata:\n  name: no-apiversion\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
		"m/sub/beta.yaml": "apiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata:\n  name: fs\n",
	}
	dir := writeTree(t, files)

	_, err := build(t, newStore(t), dir, "b:v1", nil)
	if err == nil {
		t.Fatal("beta objects built without --allow-beta")
	}
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != usererr.KindInvalid {
		t.Errorf("err kind: %v, want invalid (exit 3)", err)
	}
	var be *artifact.BetaError
	if !errors.As(err, &be) || len(be.Objects) != 2 {
		t.Fatalf("err = %v, want a BetaError with 2 objects", err)
	}
	for _, want := range []string{
		"layer m: m/sub/beta.yaml: FlowSchema fs uses pre-release apiVersion flowcontrol.apiserver.k8s.io/v1beta3",
		"layer legacy: chart legacy (legacy/templates/cronjob.yaml): CronJob legacy-nightly uses pre-release apiVersion batch/v1beta1",
		"--allow-beta",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}

	// --allow-beta builds and records it.
	s := newStore(t)
	res := mustBuild(t, s, dir, "b:v1", func(o *artifact.BuildOptions) { o.AllowBeta = true })
	if !res.Config.AllowBeta {
		t.Error("allowBeta not recorded")
	}

	// A child of a base built with --allow-beta inherits its beta objects:
	// it must allow them too.
	child := writeTree(t, map[string]string{"K8sfile": "FROM b:v1\nAPP web image=nginx:1.27\n"})
	_, err = build(t, s, child, "c:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "(inherited from b:v1)") {
		t.Fatalf("child of a beta base: %v", err)
	}
	res = mustBuild(t, s, child, "c:v1", func(o *artifact.BuildOptions) { o.AllowBeta = true })
	if !res.Config.AllowBeta {
		t.Error("child allowBeta not recorded")
	}
}

func TestIsPreRelease(t *testing.T) {
	for v, want := range map[string]bool{
		"v1": false, "apps/v1": false, "batch/v1beta1": true, "v2alpha1": true,
		"betacorp.io/v1": false, "resource.k8s.io/v1alpha3": true, "": false,
	} {
		if got := artifact.IsPreRelease(v); got != want {
			t.Errorf("IsPreRelease(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestBuildInputErrors(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing ADD path", map[string]string{"K8sfile": "FROM scratch\nADD ./nope\n"}, "K8sfile:2:1: ADD: ./nope does not exist in the build context"},
		{"bad manifest", map[string]string{"K8sfile": "FROM scratch\nADD ./m\n", "m/a.yaml": "metadata: {name: x}\n"}, "K8sfile:2:1: ADD: m/a.yaml: document 1: object has no kind"},
		{"bad yaml", map[string]string{"K8sfile": "FROM scratch\nADD ./m\n", "m/a.yaml": "kind: [\n"}, "K8sfile:2:1: ADD: m/a.yaml: document 1:"},
		{"empty dir", map[string]string{"K8sfile": "FROM scratch\nADD ./m\n", "m/README.md": "hi"}, "holds no .yaml, .yml or .json files"},
		{"broken chart", map[string]string{"K8sfile": "FROM scratch\nADD ./c\n", "c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n", "c/templates/x.yaml": "{{ .Values.nope.deeper }}\n"}, "K8sfile:2:1: ADD: rendering chart c:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := build(t, newStore(t), writeTree(t, tc.files), "x:v1", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			var ue *usererr.Error
			if !errors.As(err, &ue) || ue.Kind != usererr.KindInvalid {
				t.Errorf("kind: %v, want invalid (exit 3)", err)
			}
		})
	}
}

func TestChartKubeVersion(t *testing.T) {
	// A chart whose kubeVersion constraint the base does not meet.
	dir := writeTree(t, map[string]string{
		"K8sfile":               "FROM k2/base:v1.37\nADD ./old\n",
		"old/Chart.yaml":        "apiVersion: v2\nname: old\nversion: 0.1.0\nkubeVersion: \"<1.30.0\"\n",
		"old/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
	})
	_, err := build(t, newStore(t), dir, "k:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "chart old 0.1.0 requires Kubernetes <1.30.0, the cluster runs v1.37.2") {
		t.Fatalf("err = %v", err)
	}
}
