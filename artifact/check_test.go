package artifact_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
)

// TestCheckGolden runs BuildFile with Check, as `k2 build --check` does, on
// every build context testdata/check/<case>/ and compares what it reports
// with testdata/check/<case>.golden: the warnings, then every problem (syntax
// and build context together, sorted by line) and the exit code, or "ok".
// The e2e test TestBuildCheckGolden runs the built binary on the same cases.
func TestCheckGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/check/*/K8sfile")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no testdata/check/*/K8sfile (%v)", err)
	}
	s := newStore(t)
	for _, kf := range cases {
		dir := filepath.Dir(kf)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			abs, err := filepath.Abs(dir)
			if err != nil {
				t.Fatal(err)
			}
			t.Chdir(abs) // messages name the file as k2 build does: K8sfile:3:1
			res, warns, err := artifact.BuildFile(context.Background(), "K8sfile", artifact.BuildOptions{
				Store: s, Context: os.DirFS("."), Check: true})
			got := checkReport(res, warns, err)
			golden := abs + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run CheckGolden -update)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// checkReport is the golden text of a check.
func checkReport(res *artifact.BuildResult, warns []string, err error) string {
	var b strings.Builder
	for _, w := range warns {
		b.WriteString("warning: " + w + "\n")
	}
	if err != nil {
		fmt.Fprintf(&b, "%s\nexit %d\n", err, usererr.ExitCode(context.Background(), err))
		return b.String()
	}
	fmt.Fprintf(&b, "ok: %d layers, %d images\n", len(res.Config.Layers), len(res.Config.Images))
	return b.String()
}

// TestBuildFileWritesNothingOnSyntaxError: a K8sfile with a syntax error is
// checked in full but never becomes an artifact, even without Check.
func TestBuildFileWritesNothingOnSyntaxError(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"K8sfile":   "FROM scratch\nADD ./m\nAPP web imgae=nginx:1\nADD ./nope\n",
		"m/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
	})
	s := newStore(t)
	_, _, err := artifact.BuildFile(context.Background(), filepath.Join(dir, "K8sfile"), artifact.BuildOptions{Store: s, Ref: "x:v1"})
	if err == nil {
		t.Fatal("BuildFile succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], ":3:") || !strings.Contains(lines[1], ":4:1: ADD: ./nope does not exist") {
		t.Errorf("error:\n%v\nwant the APP syntax error (line 3), then the missing path (line 4)", err)
	}
	if _, err := s.Resolve(context.Background(), "x:v1"); !errors.Is(err, artifact.ErrNotFound) {
		t.Errorf("store has x:v1 after a failed build (Resolve: %v)", err)
	}
}
