// Package common is what every page and component of the installer shares:
// the size of the screen, styles, key bindings, the clock, the backend and
// the user's choices so far (soft-serve's pkg/ui/common, for k2).
package common

import (
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/keymap"
	"k2.dev/k2/tui/styles"
)

// Common is embedded (as a pointer) by pages and components.
type Common struct {
	Width, Height int
	Styles        *styles.Styles
	KeyMap        *keymap.KeyMap
	// Now is the clock; tests fix it so elapsed times are stable.
	Now func() time.Time
	// Backend does the work: k2's state, store, plugins and engine.
	Backend *backend.Backend
	// Choices are what the user picked on the pages so far.
	Choices *Choices
}

// Page is one screen of the installer.
type Page interface {
	// Init starts the page's work (listing, loading) when it is shown.
	Init() tea.Cmd
	Update(msg tea.Msg) (Page, tea.Cmd)
	// View renders the page into Width×Height (without header and footer).
	View() string
	SetSize(width, height int)
	// Typing reports whether a text field has focus: printable keys
	// (q, ?, j, k…) then go to it.
	Typing() bool
	// ShortHelp and FullHelp are the page's bindings for the footer and `?`.
	ShortHelp() []key.Binding
	FullHelp() [][]key.Binding
}

// Interrupter is a page that handles Ctrl-C itself (the deploy asks first).
type Interrupter interface {
	// Interrupt is called on Ctrl-C; ok false lets the installer quit.
	Interrupt() (p Page, cmd tea.Cmd, ok bool)
}

// Step identifies a page of the wizard, in order.
type Step int

// The installer's steps.
const (
	StepArtifact Step = iota
	StepEnvironment
	StepSettings
	StepReview
	StepDeploy
	StepDone
)

// StepNames are the steps' titles, shown in the header.
var StepNames = []string{"Artifact", "Environment", "Settings", "Review", "Deploy", "Done"}

// NextMsg asks the installer to show the step after From; the page has
// recorded its choice in Choices.
type NextMsg struct{ From Step }

// BackMsg asks the installer to go back to the step before From.
type BackMsg struct{ From Step }

// QuitMsg ends the installer with Err (nil: finished or left cleanly).
type QuitMsg struct{ Err error }

// Next returns a command that sends NextMsg{from}.
func Next(from Step) tea.Cmd { return func() tea.Msg { return NextMsg{From: from} } }

// Back returns a command that sends BackMsg{from}.
func Back(from Step) tea.Cmd { return func() tea.Msg { return BackMsg{From: from} } }

// Quit returns a command that sends QuitMsg{err}.
func Quit(err error) tea.Cmd { return func() tea.Msg { return QuitMsg{Err: err} } }

// WrapCommand breaks a command line between its words to fit width,
// indented, with a shell continuation at the end of every line but the
// last, so it can be copied as it is shown.
func WrapCommand(cmd string, width int) string {
	var lines []string
	line := " "
	for _, w := range strings.Fields(cmd) {
		if ansi.StringWidth(line)+1+ansi.StringWidth(w)+2 > width && strings.TrimSpace(line) != "" {
			lines = append(lines, line+" \\")
			line = "   "
		}
		line += " " + w
	}
	return strings.Join(append(lines, line), "\n")
}
