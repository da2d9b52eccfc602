package tui_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
	"k2.dev/k2/tui"
)

// program is a tui.Model run by a real tea.Program (teatest): commands,
// ticks and window sizes go through bubbletea's own loop, not the driver.
type program struct {
	t  *testing.T
	tm *teatest.TestModel
}

func runProgram(t *testing.T, m *tui.Model) *program {
	t.Helper()
	return &program{t: t, tm: teatest.NewTestModel(t, m, teatest.WithInitialTermSize(width, height))}
}

// wait waits for text in what the program wrote since the last wait.
func (p *program) wait(text string, timeout time.Duration) {
	p.t.Helper()
	teatest.WaitFor(p.t, p.tm.Output(), func(b []byte) bool { return bytes.Contains(b, []byte(text)) },
		teatest.WithDuration(timeout), teatest.WithCheckInterval(20*time.Millisecond))
}

func (p *program) key(t tea.KeyType) { p.tm.Send(tea.KeyMsg{Type: t}) }

func (p *program) typ(s string) {
	p.tm.Type(s)
}

// final waits for the program to end and returns its model.
func (p *program) final() *tui.Model {
	p.t.Helper()
	return p.tm.FinalModel(p.t, teatest.WithFinalTimeout(30*time.Second)).(*tui.Model)
}

// TestInstallProgram runs the installer in a real bubbletea program
// (teatest) from the first page to a running deploy, resizes the terminal
// mid-deploy, stops it with Ctrl-C (asked first), then lets tui.Run's
// ending — a cancelled context, as when the terminal goes away — stop a
// resumed deploy, and finally resumes it to the done page. Every stop
// leaves the deployment journaled as interrupted and resumable.
func TestInstallProgram(t *testing.T) {
	h := newHarness(t)
	h.block = make(chan struct{})
	m, _ := h.model(tui.Options{})
	p := runProgram(t, m)

	p.wait("Which cluster artifact?", 10*time.Second)
	p.key(tea.KeyDown)
	p.typ(h.dir)
	p.key(tea.KeyEnter)
	p.wait("Artifact shop:latest", 30*time.Second)
	p.key(tea.KeyEnter)
	p.wait("Provider", 30*time.Second)
	for range len("default") {
		p.key(tea.KeyBackspace)
	}
	p.typ("dev")
	p.key(tea.KeyEnter)
	p.key(tea.KeyEnter)
	// Each field is typed once the form has moved its focus there (huh
	// moves it with a command of its own).
	for _, f := range []struct{ label, value string }{
		{"stateDir", filepath.Join(h.home, "machines")}, {"network", "host"}, {"runtime", ""},
		{"token", token}, {"workers", ""}, {"greeting", "hello"},
	} {
		p.wait("┃ "+f.label, 10*time.Second)
		p.typ(f.value)
		p.key(tea.KeyEnter)
	}
	p.wait("Review the plan", 30*time.Second)
	p.key(tea.KeyEnter)
	p.wait("applying layer", 60*time.Second)

	p.tm.Send(tea.WindowSizeMsg{Width: 100, Height: 30})
	p.key(tea.KeyCtrlC)
	p.wait("Stop the deploy?", 10*time.Second)
	p.key(tea.KeyCtrlC) // a second Ctrl-C stops
	p.wait("stopped", 30*time.Second)
	p.typ("q")
	fm := p.final()
	var ue *usererr.Error
	if err := fm.Err(); !errors.As(err, &ue) || ue.Kind != usererr.KindInterrupted || !strings.Contains(ue.Hint, "k2 install --resume dev") {
		t.Fatalf("after Ctrl-C and q: %v", err)
	}
	// The last size holds: the screen fills 100×30 exactly.
	lines := strings.Split(fm.View(), "\n")
	if len(lines) != 30 {
		t.Errorf("after the resize to 100×30: %d lines", len(lines))
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w > 100 {
			t.Errorf("after the resize to 100×30: line %d is %d cells wide", i+1, w)
		}
	}
	if got := h.result(); got != state.Interrupted {
		t.Fatalf("the deployment after the stop: %s, want %s", got, state.Interrupted)
	}

	// k2 install --resume dev through tui.Run; the terminal goes away
	// (the context ends) while the layer runs: Run stops the deploy and
	// waits for the journal before it returns.
	out := &syncWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var summary string
	go func() {
		var err error
		summary, err = tui.Run(ctx, tui.Options{Backend: h.options(), Resume: "dev", In: strings.NewReader(""), Out: out})
		done <- err
	}()
	// Without a terminal to ask, the program learns no size and draws
	// nothing: the harness says when the App layer waits.
	deadline := time.Now().Add(60 * time.Second)
	for h.waiting() < 2 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the resumed deploy did not reach the App layer:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.As(err, &ue) || ue.Kind != usererr.KindInterrupted || !strings.Contains(ue.Hint, "k2 install --resume dev") || summary != "" {
			t.Fatalf("tui.Run after its context ended: %v (summary %q)", err, summary)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tui.Run did not return after its context ended")
	}
	if got := h.result(); got != state.Interrupted {
		t.Fatalf("the deployment after the terminal went away: %s, want %s", got, state.Interrupted)
	}

	// Resumed once more, unblocked: it finishes, in the same deployment.
	h.mu.Lock()
	h.block = nil
	h.mu.Unlock()
	m3, _ := h.model(tui.Options{Resume: "dev"})
	p3 := runProgram(t, m3)
	p3.wait("Press enter to see the cluster", 60*time.Second)
	p3.key(tea.KeyEnter)
	p3.wait("Kubeconfig", 10*time.Second)
	p3.typ("q")
	if fm := p3.final(); fm.Err() != nil || !strings.Contains(fm.Summary(), "kubeconfig: ") {
		t.Fatalf("after the done page: err %v, summary %q", fm.Err(), fm.Summary())
	}
	if got := h.result(); got != state.Succeeded {
		t.Errorf("the deployment at the end: %s, want %s", got, state.Succeeded)
	}
	if got := h.machines(); len(got) != 3 {
		t.Errorf("machines at the end: %v (made again?)", got)
	}
}

func (h *harness) waiting() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.waits
}

// result is the result of dev's only deployment.
func (h *harness) result() state.Result {
	h.t.Helper()
	s, err := state.Open(context.Background(), h.home)
	if err != nil {
		h.t.Fatal(err)
	}
	defer s.Close()
	hist, err := s.History(context.Background(), "dev", 0)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(hist) != 1 {
		h.t.Fatalf("dev has %d deployments, want 1: %+v", len(hist), hist)
	}
	return hist[0].Result
}

// syncWriter is a terminal's output read while a program writes it.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
