package backend

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLogBufferKeepsLastLinesAndMasksSecrets(t *testing.T) {
	b := NewLogBuffer(3)
	log := slog.New(b.Handler(slog.LevelInfo)).With("provider", "cloud")
	b.Redact("hunter22")
	log.Debug("hidden")
	log.Info("validating", "config", `{"token":"hunter22"}`)
	log.WithGroup("req").Warn("retry", "n", 2)
	b.Add("one\ntwo")
	lines, seq := b.Lines()
	if seq != 4 {
		t.Errorf("seq %d, want 4 (the debug record is below the level)", seq)
	}
	for i, l := range lines {
		lines[i] = l[strings.Index(l, " ")+1:] // drop the time
	}
	want := []string{`WARN  retry provider=cloud req.n=2`, "one", "two"}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	b2 := NewLogBuffer(10)
	b2.Redact("hunter22")
	slog.New(b2.Handler(slog.LevelInfo)).Info("validating", "config", `{"token":"hunter22"}`)
	got, _ := b2.Lines()
	if strings.Contains(got[0], "hunter22") || !strings.Contains(got[0], Masked) {
		t.Errorf("secret not masked: %s", got[0])
	}
}

func TestPinned(t *testing.T) {
	for ref, want := range map[string]string{
		"hello:v1":                       "hello@sha256:ab",
		"hello":                          "hello@sha256:ab",
		"localhost:5000/shop/hello:1.2":  "localhost:5000/shop/hello@sha256:ab",
		"localhost:5000/hello@sha256:cd": "localhost:5000/hello@sha256:ab",
	} {
		if got := pinned(ref, "sha256:ab"); got != want {
			t.Errorf("pinned(%q) = %q, want %q", ref, got, want)
		}
	}
}
