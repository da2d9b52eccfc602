package report

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func read(t *testing.T, name string) []Case {
	t.Helper()
	cs, err := ReadJUnit("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestMerge: a spec takes the outcome of the run that ran it (the other run
// only filtered it out); runtime skips keep their reason; specs no run ran
// take the reason of the exclusion that left them out; specs that are not
// [Conformance] are not counted.
func TestMerge(t *testing.T) {
	excluded := []Excluded{{Pattern: regexp.MustCompile(`AdmissionWebhook`), Reason: "not run: no route"}}
	specs := Merge([][]Case{read(t, "parallel.xml"), read(t, "serial.xml")}, excluded, regexp.MustCompile(`\[Conformance\]`))
	got := map[string]string{}
	for _, s := range specs {
		got[s.Name] = s.Status + ": " + s.Reason
	}
	want := map[string]string{
		"[sig-apps] Deployment should run the lifecycle of a Deployment [Conformance] [sig-apps, Conformance]":           "passed: ",
		"[sig-node] Pods should be updated [Conformance] [NodeConformance] [sig-node, NodeConformance, Conformance]":     "failed: timed out waiting for the condition\nsecond line",
		"[sig-apps] Daemon set should run and stop simple daemon [Conformance] [Serial] [sig-apps, Serial, Conformance]": "passed: ",
		"[sig-network] DNS should provide DNS for the cluster [Conformance] [sig-network, Conformance]":                  "skipped: Requires at least 3 nodes (not 2)",
		"[sig-api-machinery] AdmissionWebhook should deny [Conformance] [sig-api-machinery, Conformance]":                "skipped: not run: no route",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("merged (-want +got):\n%s", d)
	}
	s := Summarize(specs)
	if s.Total != 5 || s.Passed != 2 || s.Failed != 1 || s.Skipped != 2 || s.NotRun != 0 {
		t.Errorf("summary %+v", s)
	}
}

// TestMergeSubset: with a narrower focus, a conformance spec outside it
// that no run ran counts as not run; one inside it that no run ran (the
// serial run missing) as skipped.
func TestMergeSubset(t *testing.T) {
	specs := Merge([][]Case{read(t, "parallel.xml")}, nil, regexp.MustCompile(`\[sig-apps\]`))
	s := Summarize(specs)
	if s.Total != 5 || s.Passed != 1 || s.NotRun != 1 || s.Skipped != 2 || s.Failed != 1 {
		t.Errorf("summary %+v", s)
	}
}

// TestWriteJUnitRoundTrip: the merged report reads back as the same
// outcomes.
func TestWriteJUnitRoundTrip(t *testing.T) {
	s := Summarize(Merge([][]Case{read(t, "parallel.xml"), read(t, "serial.xml")}, nil, nil))
	var b bytes.Buffer
	if err := WriteJUnit(&b, s); err != nil {
		t.Fatal(err)
	}
	f := t.TempDir() + "/j.xml"
	if err := os.WriteFile(f, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJUnit(f)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	n := map[string]int{}
	for _, c := range back {
		n[c.Status]++
	}
	if d := cmp.Diff(map[string]int{"passed": 2, "failed": 1, "skipped": 2}, n); d != "" {
		t.Errorf("statuses read back (-want +got):\n%s\n%s", d, b.String())
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, s, []string{"a note"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"**2 of 5**", "## Failed (1)", "## Skipped (2)", "Requires at least 3 nodes", "- a note"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}
