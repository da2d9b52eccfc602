package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuildCheckGolden runs `k2 build --check` on every build context in
// artifact/testdata/check and compares what it prints — every syntax and
// build-context problem at once, sorted by line — and its exit code with the
// golden files the artifact package's TestCheckGolden keeps.
func TestBuildCheckGolden(t *testing.T) {
	cases, err := filepath.Glob("../artifact/testdata/check/*/K8sfile")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no ../artifact/testdata/check/*/K8sfile (%v)", err)
	}
	home := t.TempDir()
	for _, kf := range cases {
		dir, err := filepath.Abs(filepath.Dir(kf))
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			want, err := os.ReadFile(dir + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			r := k2(t, home, "build", "--check", "-f", filepath.Join(dir, "K8sfile"), dir)
			var got strings.Builder
			if r.Code == 0 {
				got.WriteString(r.Stdout)
			} else {
				for _, line := range strings.SplitAfter(r.Stderr, "\n") {
					if !strings.HasPrefix(line, "time=") && line != "" {
						got.WriteString(strings.TrimPrefix(line, "k2: "))
					}
				}
				fmt.Fprintf(&got, "\nexit %d\n", r.Code)
			}
			text := strings.ReplaceAll(got.String(), dir+string(filepath.Separator), "")
			if r.Code == 0 {
				// The binary prints the would-be digest; the golden file the
				// counts. Both say ok.
				if !strings.HasPrefix(string(want), "ok:") || !strings.Contains(text, "K8sfile: ok (") {
					t.Errorf("k2 build --check: %q, golden %q", text, want)
				}
				return
			}
			if diff := cmp.Diff(string(want), strings.Replace(text, "\n\nexit", "\nexit", 1)); diff != "" {
				t.Errorf("k2 build --check %s (-want +got):\n%s\nstderr:\n%s", dir, diff, r.Stderr)
			}
		})
	}
}
