package artifact_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
)

// writeTree writes files (name → content) under a new temp dir and returns it.
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newStore(t testing.TB) *artifact.Store {
	t.Helper()
	s, err := artifact.OpenStore(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// build parses dir/K8sfile and builds it into s.
func build(t testing.TB, s *artifact.Store, dir, ref string, mod func(*artifact.BuildOptions)) (*artifact.BuildResult, error) {
	t.Helper()
	f, _, err := k8sfile.ParseFile(filepath.Join(dir, k8sfile.DefaultName))
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	opts := artifact.BuildOptions{Store: s, Context: os.DirFS(dir), Ref: ref}
	if mod != nil {
		mod(&opts)
	}
	return artifact.Build(context.Background(), f, opts)
}

func mustBuild(t testing.TB, s *artifact.Store, dir, ref string, mod func(*artifact.BuildOptions)) *artifact.BuildResult {
	t.Helper()
	res, err := build(t, s, dir, ref, mod)
	if err != nil {
		t.Fatalf("building %s: %v", ref, err)
	}
	return res
}

func helloDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("../examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	return d
}
