package tui_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"k2.dev/k2/tui"
	"k2.dev/k2/tui/backend"
)

type environ map[string]string

func (e environ) Environ() []string {
	var out []string
	for k, v := range e {
		out = append(out, k+"="+v)
	}
	return out
}

func (e environ) Getenv(k string) string { return e[k] }

// screen renders the installer's first page with renderer r.
func screen(t *testing.T, r *lipgloss.Renderer) string {
	t.Helper()
	h := newHarness(t)
	b := backend.New(h.options())
	t.Cleanup(b.Close)
	d := drive(t, tui.New(b, tui.Options{Renderer: r}))
	d.untilScreen("Which cluster artifact?", 10*time.Second)
	return d.m.View()
}

// TestColours: NO_COLOR gives plain text; a colour terminal gets colours
// that differ between a dark and a light background.
func TestColours(t *testing.T) {
	renderer := func(env environ, dark bool) *lipgloss.Renderer {
		r := lipgloss.NewRenderer(io.Discard, termenv.WithEnvironment(env), termenv.WithTTY(true))
		r.SetHasDarkBackground(dark)
		return r
	}
	noColor := renderer(environ{"NO_COLOR": "1", "TERM": "xterm-256color", "COLORTERM": "truecolor"}, true)
	if p := noColor.ColorProfile(); p != termenv.Ascii {
		t.Fatalf("NO_COLOR gives profile %v", p)
	}
	if v := screen(t, noColor); strings.Contains(v, "\x1b[") {
		t.Errorf("NO_COLOR screen has escape sequences:\n%q", v)
	}
	colour := environ{"TERM": "xterm-256color", "COLORTERM": "truecolor"}
	dark, light := screen(t, renderer(colour, true)), screen(t, renderer(colour, false))
	if !strings.Contains(dark, "\x1b[") {
		t.Errorf("a colour terminal gets no colour:\n%q", dark)
	}
	if dark == light {
		t.Errorf("the same colours on dark and light backgrounds")
	}
}
