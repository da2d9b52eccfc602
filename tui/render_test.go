package tui_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
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

// TestSignatureStatus: the artifact page says whether the artifact is
// signed, and verified with the keys given (k2 install --key).
func TestSignatureStatus(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	b := backend.New(h.options())
	if _, err := b.Build(ctx, h.dir, "shop:v1"); err != nil {
		t.Fatal(err)
	}
	b.Close()
	open := func(keys []*sign.PublicKey) string {
		t.Helper()
		o := h.options()
		o.Keys = keys
		b := backend.New(o)
		t.Cleanup(b.Close)
		d := drive(t, tui.New(b, tui.Options{Ref: "shop:v1"}))
		d.untilScreen("Artifact shop:v1", 30*time.Second)
		return d.m.View()
	}
	if v := open(nil); !strings.Contains(v, "Signature   not signed") {
		t.Errorf("an unsigned artifact:\n%s", v)
	}
	privPEM, pubPEM, err := sign.GenerateKey("ed25519")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := sign.ParsePrivateKey(privPEM, "test.key")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := sign.ParsePublicKey(pubPEM, "test.pub")
	if err != nil {
		t.Fatal(err)
	}
	store, err := artifact.OpenStore(ctx, artifact.StoreDir(h.home))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sign.SignRef(ctx, store, "shop:v1", priv, artifact.RemoteOptions{}, sign.Options{}); err != nil {
		t.Fatal(err)
	}
	if v := open(nil); !strings.Contains(v, "signed (1), not verified") {
		t.Errorf("a signed artifact without keys:\n%s", v)
	}
	if v := open([]*sign.PublicKey{pub}); !strings.Contains(v, "✓ verified with") {
		t.Errorf("a signed artifact with its key:\n%s", v)
	}
	_, otherPEM, _ := sign.GenerateKey("ed25519")
	other, _ := sign.ParsePublicKey(otherPEM, "other.pub")
	if v := open([]*sign.PublicKey{other}); !strings.Contains(v, "✗ invalid") {
		t.Errorf("a signed artifact with another key:\n%s", v)
	}
}
