package lint_test

import (
	"context"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/provision/lint"
)

var update = flag.Bool("update", false, "rewrite testdata/tree.golden.json")

// TestPaths lints a tree of old manifests and a chart and compares the
// report with testdata/tree.golden.json (-update rewrites it).
func TestPaths(t *testing.T) {
	t.Parallel()
	r, err := lint.Paths(context.Background(), []string{"testdata/tree"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const golden = "testdata/tree.golden.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	// The properties the golden file must keep, spelled out.
	for _, want := range []string{
		`"replacement": "networking.k8s.io/v1"`, `"replacement": "policy/v1"`, `"replacement": "batch/v1"`,
		`"replacement": "autoscaling/v2"`, `"replacement": "apps/v1"`, `"problem": "alpha"`, `"problem": "invalid"`,
		`Pod Security Admission`,
	} {
		if !strings.Contains(string(got), want) {
			t.Errorf("report lacks %s", want)
		}
	}
	if strings.Contains(string(got), "versionless") || strings.Contains(string(got), `"name": "stable"`) {
		t.Error("stable or versionless objects reported")
	}
}

func TestMissingPath(t *testing.T) {
	t.Parallel()
	if _, err := lint.Paths(context.Background(), []string{"testdata/nope"}); err == nil {
		t.Fatal("no error for a missing path")
	}
}
