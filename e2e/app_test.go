package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

func writeFiles(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestAppWithKubectl runs k2 server, applies versionless manifests with
// k2 apply, and checks with the real kubectl: the App's printer columns,
// kubectl explain, the children it owns, the stable versions the objects
// were stored under, and that a beta-only kind is refused.
func TestAppWithKubectl(t *testing.T) {
	s := startServer(t, t.TempDir())
	home := t.TempDir()
	eventually(t, time.Minute, "k2 server installs the App CRD (its App controller runs in the server)", func() error {
		_, err := s.kubectl("get", "crd", "apps.k2.dev")
		return err
	})

	manifests := writeFiles(t, map[string]string{
		"app.yaml": `kind: App
metadata: {name: web}
spec:
  image: nginx:1.27
  ports: [80]
  replicas: 2
  env: [{name: GREETING, value: hello}]
`,
		"api.yaml": testutil.Fixture("versionless.yaml"),
	})
	r := mustK2(t, home, "apply", "-f", manifests, "--kubeconfig", s.Kubeconfig(), "-o", "json")
	var res struct {
		Objects []struct {
			Object      struct{ APIVersion, Kind, Name string }
			Versionless bool
			Action      string
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatalf("k2 apply -o json: %v\n%s", err, r.Stdout)
	}
	want := map[string]string{"ConfigMap": "v1", "Deployment": "apps/v1", "Service": "v1", "App": "k2.dev/v1"}
	if len(res.Objects) != 4 {
		t.Fatalf("applied %d objects, want 4: %s", len(res.Objects), r.Stdout)
	}
	for _, o := range res.Objects {
		if o.Object.APIVersion != want[o.Object.Kind] || !o.Versionless || o.Action != "created" {
			t.Errorf("%s/%s: %+v, want versionless %s created", o.Object.Kind, o.Object.Name, o, want[o.Object.Kind])
		}
	}
	// Stored under the stable version: the server recorded k2's apply as such.
	for _, k := range []struct{ res, name, want string }{
		{"deployment", "api", "apps/v1"}, {"service", "api", "v1"}, {"configmap", "settings", "v1"}, {"apps.k2.dev", "web", "k2.dev/v1"},
	} {
		// One entry per operation k2 made (an apply; an update of another
		// subresource may add one): each under the stable version.
		got := s.mustKubectl("get", k.res, k.name, "-o", `jsonpath={.metadata.managedFields[?(@.manager=="k2")].apiVersion}`)
		versions := strings.Fields(got)
		if len(versions) == 0 || slices.ContainsFunc(versions, func(v string) bool { return v != k.want }) {
			t.Errorf("%s/%s stored by k2 as %q, want %s", k.res, k.name, got, k.want)
		}
	}

	// The App's children, owned by it.
	eventually(t, time.Minute, "App children", func() error {
		out, err := s.kubectl("get", "deployment,service,configmap", "-l", "k2.dev/app=web",
			"-o", `jsonpath={range .items[*]}{.kind}/{.metadata.name}:{.metadata.ownerReferences[0].kind}{"\n"}{end}`)
		if err != nil {
			return err
		}
		for _, w := range []string{"Deployment/web:App", "Service/web:App", "ConfigMap/web-env:App"} {
			if !strings.Contains(out, w) {
				return fmt.Errorf("no %s in\n%s", w, out)
			}
		}
		return nil
	})

	// Printer columns, as kubectl prints them.
	var table string
	eventually(t, time.Minute, "kubectl get apps.k2.dev shows the roll-up", func() error {
		table = s.mustKubectl("get", "apps.k2.dev")
		if !regexp.MustCompile(`(?m)^web\s+False\s+0/2\s+http://web\.default\.svc:80\s+nginx:1\.27\s+\S+\s*$`).MatchString(table) {
			return fmt.Errorf("unexpected table:\n%s", table)
		}
		return nil
	})
	if !regexp.MustCompile(`^NAME\s+READY\s+REPLICAS\s+URL\s+IMAGE\s+AGE\n`).MatchString(table) {
		t.Errorf("header of kubectl get apps.k2.dev:\n%s", table)
	}
	if wide := s.mustKubectl("get", "apps.k2.dev", "-o", "wide"); !strings.Contains(wide, "ERROR") {
		t.Errorf("kubectl get -o wide lacks the Error column:\n%s", wide)
	}
	if all := s.mustKubectl("get", "all"); !strings.Contains(all, "app.k2.dev/web") {
		t.Errorf("kubectl get all does not list the App:\n%s", all)
	}

	// kubectl explain, from the structural schema's descriptions.
	explain := s.mustKubectl("explain", "app.spec")
	for _, w := range []string{"GROUP:      k2.dev", "VERSION:    v1", "Spec is what the App should run", "image\t<string> -required-", "autoscale\t<Object>"} {
		if !strings.Contains(explain, w) {
			t.Errorf("kubectl explain app.spec lacks %q:\n%s", w, explain)
		}
	}
	if out := s.mustKubectl("explain", "app.spec.autoscale.cpu"); !strings.Contains(out, "target average CPU utilisation") {
		t.Errorf("kubectl explain app.spec.autoscale.cpu:\n%s", out)
	}

	// A kind the server serves only as beta is refused, clearly, unless --allow-beta.
	crd := writeFiles(t, map[string]string{"crd.yaml": `kind: CustomResourceDefinition
metadata: {name: widgets.beta.example.com}
spec:
  group: beta.example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
  versions:
  - {name: v1beta1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
`})
	mustK2(t, home, "apply", "-f", crd, "--kubeconfig", s.Kubeconfig(), "--wait")
	widget := writeFiles(t, map[string]string{"w.yaml": "kind: Widget\nmetadata: {name: w1}\n"})
	r = k2(t, home, "apply", "-f", widget, "--kubeconfig", s.Kubeconfig())
	if r.Code != 3 || !strings.Contains(r.Stderr, "w.yaml:1") || !strings.Contains(r.Stderr, "only as beta.example.com/v1beta1") ||
		!strings.Contains(r.Stderr, "--allow-beta") {
		t.Errorf("beta-only kind: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
	if _, err := s.kubectl("get", "widgets.beta.example.com", "w1"); err == nil {
		t.Error("the refused Widget exists")
	}
	mustK2(t, home, "apply", "-f", widget, "--kubeconfig", s.Kubeconfig(), "--allow-beta")

	// Deleting the App removes its children (owner references + GC).
	s.mustKubectl("delete", "apps.k2.dev", "web")
	eventually(t, time.Minute, "children garbage-collected", func() error {
		out, err := s.kubectl("get", "deployment,service,configmap", "-l", "k2.dev/app=web", "-o", "name")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("still there:\n%s", out)
		}
		return nil
	})
}

// TestLint checks k2 lint's findings, exit codes and JSON on manifests.
func TestLint(t *testing.T) {
	home := t.TempDir()
	old := writeFiles(t, map[string]string{"old.yaml": `apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {name: web}
---
apiVersion: extensions/v1beta1
kind: Ingress
metadata: {name: web}
`, "fine.yaml": "kind: Deployment\nmetadata: {name: ok}\n"})
	r := k2(t, home, "lint", old)
	if r.Code != 3 {
		t.Fatalf("k2 lint: exit %d, want 3\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, w := range []string{"old.yaml:1", "PodDisruptionBudget/web", "policy/v1", "old.yaml:5", "networking.k8s.io/v1", "removed in 1.22"} {
		if !strings.Contains(r.Stdout, w) {
			t.Errorf("k2 lint output lacks %q:\n%s", w, r.Stdout)
		}
	}
	r = k2(t, home, "lint", "-o", "json", old)
	var rep struct {
		Objects  int
		Findings []struct{ Kind, Replacement, Problem string }
	}
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil || r.Code != 3 {
		t.Fatalf("k2 lint -o json: exit %d, %v\n%s", r.Code, err, r.Stdout)
	}
	if rep.Objects != 3 || len(rep.Findings) != 2 || rep.Findings[0].Replacement != "policy/v1" {
		t.Errorf("report = %+v", rep)
	}
	// An artifact built with --allow-beta, linted by reference.
	ctxDir := writeFiles(t, map[string]string{
		"K8sfile":          "FROM k2/base:v1.37\nADD ./manifests\n",
		"manifests/a.yaml": "apiVersion: batch/v1beta1\nkind: CronJob\nmetadata: {name: nightly}\n",
	})
	mustK2(t, home, "build", "--allow-beta", "-t", "lint-me:v1", ctxDir)
	r = k2(t, home, "lint", "lint-me:v1")
	if r.Code != 3 || !strings.Contains(r.Stdout, "CronJob/nightly") || !strings.Contains(r.Stdout, "batch/v1") {
		t.Errorf("k2 lint of an artifact: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	fine := writeFiles(t, map[string]string{"a.yaml": "kind: Service\nmetadata: {name: a}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: b}\n"})
	if r := mustK2(t, home, "lint", fine); !strings.Contains(r.Stdout, "2 object(s) checked") {
		t.Errorf("k2 lint on stable manifests: %s", r.Stdout)
	}
}
