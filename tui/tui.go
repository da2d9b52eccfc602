// Package tui is `k2 install`: an interactive installer in the terminal
// (bubbletea, bubbles, huh and lipgloss) that walks a person from an
// artifact to a running cluster — artifact, environment and provider,
// settings, review, the deploy live, done — through the same engine,
// plan, state and provider packages as the k2 commands. It holds
// presentation only; the work is in backend and provision/engine.
//
// Layout (soft-serve's pkg/ui): common (what pages share), styles, keymap,
// components (header, footer, list, steps, logpane), pages (one package per
// step) and backend (k2's side).
package tui

import (
	"context"
	"errors"
	"io"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/keymap"
	"k2.dev/k2/tui/pages/deploy"
	"k2.dev/k2/tui/pages/done"
	"k2.dev/k2/tui/styles"
)

// Options configure the installer.
type Options struct {
	Backend backend.Options
	// Ref is an artifact to open at once (k2 install REF).
	Ref string
	// Resume names an environment whose unfinished deploy the installer
	// continues at once (k2 install --resume ENV).
	Resume string
	// Renderer decides colours and the background (nil: lipgloss's
	// default, which honours NO_COLOR and asks the terminal).
	Renderer *lipgloss.Renderer
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// In and Out are the terminal (nil: stdin and stdout).
	In  io.Reader
	Out io.Writer
}

// Run runs the installer until the user leaves it. It returns what to
// print once the screen is restored (the done page's paths and commands)
// and the error to exit with: nil when the cluster runs or the user left
// before deploying; the deploy's error, or an interruption, otherwise —
// with how to resume.
func Run(ctx context.Context, o Options) (string, error) {
	b := backend.New(o.Backend)
	defer b.Close()
	m := New(b, o)
	opts := []tea.ProgramOption{tea.WithAltScreen(), tea.WithContext(ctx)}
	if o.In != nil {
		opts = append(opts, tea.WithInput(o.In))
	}
	if o.Out != nil {
		opts = append(opts, tea.WithOutput(o.Out))
	}
	final, err := tea.NewProgram(m, opts...).Run()
	if fm, ok := final.(*Model); ok && fm != nil {
		m = fm
	}
	if stopped := m.stopDeploy(); stopped != nil {
		return "", stopped
	}
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) && !errors.Is(err, tea.ErrInterrupted) {
		return "", err
	}
	if err != nil {
		return "", usererr.Wrap(usererr.KindInterrupted, errors.New("k2 install interrupted"), "")
	}
	return m.Summary(), m.Err()
}

// New returns the installer's model (Run runs it; tests drive it).
func New(b *backend.Backend, o Options) *Model {
	r := o.Renderer
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	c := &common.Common{Styles: styles.New(r), KeyMap: keymap.Default(), Now: now, Backend: b, Choices: &common.Choices{}}
	m := &Model{c: c, pages: map[common.Step]common.Page{}, ref: o.Ref, resume: o.Resume}
	return m
}

// stopDeploy stops a deploy the program left running (the terminal went
// away, a signal) and waits until it is journaled as interrupted.
func (m *Model) stopDeploy() error {
	p, ok := m.pages[common.StepDeploy].(*deploy.Page)
	if !ok {
		return nil
	}
	if err := p.StopAndWait(); err != nil {
		return usererr.Wrap(usererr.KindInterrupted, err, deploy.ResumeHint(m.c.Choices.Env))
	}
	return nil
}

// Summary is what to print after the screen is restored.
func (m *Model) Summary() string {
	if p, ok := m.pages[common.StepDone].(*done.Page); ok && m.step == common.StepDone {
		return done.Summary(m.c.Choices, p.Status())
	}
	return ""
}

// Err is the error the installer ends with.
func (m *Model) Err() error { return m.err }

var _ tea.Model = (*Model)(nil)
