// Package styles holds the installer's lipgloss styles. Colours adapt to a
// light or dark terminal background; with NO_COLOR (or a terminal without
// colour) the renderer drops them, and every state stays readable from its
// symbol alone (› ✓ ✗ ⠋ ·).
package styles

import "github.com/charmbracelet/lipgloss"

// Styles are the installer's styles, made for one renderer.
type Styles struct {
	App       lipgloss.Style
	Title     lipgloss.Style // the product name in the header
	StepDone  lipgloss.Style // a finished step of the wizard in the header
	StepNow   lipgloss.Style
	StepLater lipgloss.Style
	Heading   lipgloss.Style // a section title
	Label     lipgloss.Style // the left column of key/value lines
	Muted     lipgloss.Style
	Selected  lipgloss.Style // the row under the cursor
	Disabled  lipgloss.Style
	OK        lipgloss.Style
	Error     lipgloss.Style
	Warn      lipgloss.Style
	Running   lipgloss.Style
	Code      lipgloss.Style // a command to copy
	Help      lipgloss.Style
	Box       lipgloss.Style // dialogs
	Rule      lipgloss.Style
}

var (
	accent = lipgloss.AdaptiveColor{Light: "#5A3FD6", Dark: "#A99BFF"}
	muted  = lipgloss.AdaptiveColor{Light: "#6B6B6B", Dark: "#8A8A8A"}
	green  = lipgloss.AdaptiveColor{Light: "#137333", Dark: "#5FD787"}
	red    = lipgloss.AdaptiveColor{Light: "#B3261E", Dark: "#FF6B6B"}
	yellow = lipgloss.AdaptiveColor{Light: "#8A5A00", Dark: "#E5C07B"}
	blue   = lipgloss.AdaptiveColor{Light: "#0B57D0", Dark: "#7DB7FF"}
)

// New returns the styles for r; r decides the colour profile (NO_COLOR
// gives none) and whether the background is dark.
func New(r *lipgloss.Renderer) *Styles {
	s := r.NewStyle
	return &Styles{
		App:       s().Padding(0, 1),
		Title:     s().Bold(true).Foreground(accent),
		StepDone:  s().Foreground(green),
		StepNow:   s().Bold(true).Underline(true).Foreground(accent),
		StepLater: s().Foreground(muted),
		Heading:   s().Bold(true),
		Label:     s().Foreground(muted),
		Muted:     s().Foreground(muted),
		Selected:  s().Bold(true).Foreground(accent),
		Disabled:  s().Foreground(muted).Faint(true),
		OK:        s().Foreground(green),
		Error:     s().Foreground(red),
		Warn:      s().Foreground(yellow),
		Running:   s().Foreground(blue),
		Code:      s().Foreground(accent),
		Help:      s().Foreground(muted),
		Box:       s().Border(lipgloss.RoundedBorder()).BorderForeground(accent).Padding(0, 1),
		Rule:      s().Foreground(muted),
	}
}
