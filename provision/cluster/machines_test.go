package cluster

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestTailWriter: a machine's console can be megabytes; the node wait's
// report keeps only the end, in whole non-blank lines without carriage
// returns or escapes, each cut to its end.
func TestTailWriter(t *testing.T) {
	w := &tailWriter{max: 1 << 10}
	for i := range 1000 {
		fmt.Fprintf(w, "line %d\r\n", i)
	}
	fmt.Fprintf(w, "\n\n\x1b[31mred\x1b[0m\n%s\n  \n", strings.Repeat("x", 300)+"end")
	if len(w.b) > 1<<10 {
		t.Errorf("kept %d bytes, want at most %d", len(w.b), 1<<10)
	}
	got := w.lines(4, 20)
	want := []string{"line 998", "line 999", "red", "…" + strings.Repeat("x", 17) + "end"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if got := (&tailWriter{max: 10}).lines(4, 20); len(got) != 0 {
		t.Errorf("nothing written: lines %q", got)
	}
}
