package artifact_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
)

func TestBuildHello(t *testing.T) {
	s := newStore(t)
	res := mustBuild(t, s, helloDir(t), "hello:v1", nil)
	a, err := artifact.Open(context.Background(), s, "hello:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Descriptor.Digest.String() != res.Digest {
		t.Errorf("opened digest %s, built %s", a.Descriptor.Digest, res.Digest)
	}
	c := a.Config
	var names, kinds []string
	for _, l := range c.Layers {
		names = append(names, l.Name)
		kinds = append(kinds, l.Kind)
	}
	if diff := cmp.Diff([]string{"k2-system", "hello-manifests", "greeter", "web"}, names); diff != "" {
		t.Errorf("layers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"manifests", "manifests", "chart", "app"}, kinds); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
	if c.Kubernetes != "v1.37.2" {
		t.Errorf("kubernetes = %q", c.Kubernetes)
	}
	if len(c.Base) != 1 || c.Base[0].Ref != "k2/base:v1.37" || c.Base[0].Digest == "" {
		t.Errorf("base = %+v", c.Base)
	}
	wantMachines := []artifact.MachineSpec{
		{Pool: "control-plane", Count: "1", CPU: "2", Memory: "4Gi"},
		{Pool: "worker", Count: "2", CPU: "2", Memory: "4Gi"},
	}
	if diff := cmp.Diff(wantMachines, c.Machines); diff != "" {
		t.Errorf("machines (-want +got):\n%s", diff)
	}
	wantObjs := []artifact.Object{
		{Kind: "ConfigMap", Namespace: "default", Name: "hello-config", File: "configmap.yaml"},
		{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "hello", File: "deployment.yaml"},
	}
	if diff := cmp.Diff(wantObjs, c.Layer("hello-manifests").Objects); diff != "" {
		t.Errorf("manifest objects (-want +got):\n%s", diff)
	}
	wantChart := []artifact.Object{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "greeter-greeting", File: "greeter/templates/configmap.yaml"},
		{APIVersion: "v1", Kind: "Service", Name: "greeter", File: "greeter/templates/service.yaml"},
	}
	if diff := cmp.Diff(wantChart, c.Layer("greeter").Objects); diff != "" {
		t.Errorf("chart objects (-want +got):\n%s", diff)
	}
	files, err := a.Files(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	wantApp := `apiVersion: k2.dev/v1
kind: App
metadata:
    name: web
spec:
    image: nginx:1.27
    ports:
        - 80
    replicas: ${replicas}
    env:
        - name: GREETING
          value: ${greeting}
`
	if diff := cmp.Diff(wantApp, string(files[0].Data)); diff != "" {
		t.Errorf("app object (-want +got):\n%s", diff)
	}
	ch, spec, err := a.Chart(context.Background(), "greeter")
	if err != nil {
		t.Fatal(err)
	}
	if ch.Name() != "greeter" || spec.Release != "greeter" || spec.Namespace != "default" {
		t.Errorf("chart %s release %s ns %s", ch.Name(), spec.Release, spec.Namespace)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	t.Logf("config:\n%s", b)
}

func TestBuildReproducible(t *testing.T) {
	src := helloDir(t)
	// Two stores, and a copy of the context with fresh mtimes and modes.
	copyDir := t.TempDir()
	if err := os.CopyFS(copyDir, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(copyDir, "manifests", "deployment.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	r1 := mustBuild(t, newStore(t), src, "hello:v1", nil)
	r2 := mustBuild(t, newStore(t), copyDir, "other:v2", nil)
	if r1.Digest != r2.Digest {
		t.Fatalf("same inputs, different digests: %s vs %s", r1.Digest, r2.Digest)
	}
	// A changed file gives a different digest.
	p := filepath.Join(copyDir, "manifests", "configmap.yaml")
	data, _ := os.ReadFile(p)
	if err := os.WriteFile(p, append(data, "  extra: x\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	r3 := mustBuild(t, newStore(t), copyDir, "other:v3", nil)
	if r3.Digest == r1.Digest {
		t.Fatalf("changed file, same digest %s", r3.Digest)
	}
}

// TestBuiltinBaseDigest pins the built-in base's digest: it must not change
// unless its embedded content or the packing code changes on purpose.
func TestBuiltinBaseDigest(t *testing.T) {
	const want = "sha256:e838f4289fd1b636fe70999060d871d0a9c7a98126182fd69378b00b0ef22c43"
	d1, err := artifact.EnsureBuiltin(context.Background(), newStore(t), "k2/base:v1.37")
	if err != nil {
		t.Fatal(err)
	}
	d2, err := artifact.EnsureBuiltin(context.Background(), newStore(t), "k2/base:v1.37")
	if err != nil {
		t.Fatal(err)
	}
	if d1.Digest != d2.Digest {
		t.Fatalf("built-in base not deterministic: %s vs %s", d1.Digest, d2.Digest)
	}
	if d1.Digest.String() != want {
		t.Errorf("built-in base digest = %s, want %s (update want only if the base changed on purpose)", d1.Digest, want)
	}
}

func TestCheckWritesNothing(t *testing.T) {
	s := newStore(t)
	// Generate the base first so that only the check's own blobs could appear.
	if _, err := artifact.EnsureBuiltin(context.Background(), s, "k2/base:v1.37"); err != nil {
		t.Fatal(err)
	}
	before := countBlobs(t, s.Dir())
	res := mustBuild(t, s, helloDir(t), "hello:v1", func(o *artifact.BuildOptions) { o.Check = true })
	if res.Ref != "" {
		t.Errorf("check tagged %s", res.Ref)
	}
	if after := countBlobs(t, s.Dir()); after != before {
		t.Errorf("check wrote %d blobs", after-before)
	}
	if _, err := s.Resolve(context.Background(), "hello:v1"); err == nil {
		t.Error("check tagged hello:v1")
	}
	// The check's digest is the real build's.
	if real := mustBuild(t, s, helloDir(t), "hello:v1", nil); real.Digest != res.Digest {
		t.Errorf("check digest %s, build %s", res.Digest, real.Digest)
	}
}

func countBlobs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
