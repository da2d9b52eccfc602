// Package review is the installer's fourth page: the plan exactly as
// `k2 deploy --dry-run` prints it, with that command line, to confirm.
package review

import (
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/common"
)

// Page is the review page.
type Page struct {
	*common.Common
	text   string
	vp     viewport.Model
	width  int
	height int
}

// New returns the page for the planned choices.
func New(c *common.Common) *Page {
	p := &Page{Common: c}
	var b strings.Builder
	if err := c.Choices.Plan.WriteText(&b); err != nil {
		b.WriteString(err.Error())
	}
	p.text = b.String()
	p.vp = viewport.New(0, 0)
	p.vp.SetContent(strings.TrimRight(p.text, "\n"))
	return p
}

// Text is the plan as the page shows it: `k2 deploy --dry-run`'s output.
func (p *Page) Text() string { return p.text }

// Command is the `k2 deploy --dry-run` command line that prints the same
// plan (provider settings of a new environment aside: they have no flag).
func Command(ch *common.Choices) string {
	args := []string{"k2", "deploy", shellQuote(ch.Artifact.Ref), "--env", ch.Env}
	if ch.EnvRecord == nil && ch.Provider != nil {
		args = append(args, "--provider", ch.Provider.Name)
	}
	for _, s := range ch.PlanRequest().SetArgs() {
		args = append(args, "--set", shellQuote(s))
	}
	return strings.Join(append(args, "--dry-run"), " ")
}

func shellQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Init does nothing.
func (p *Page) Init() tea.Cmd { return nil }

// Update scrolls, confirms or goes back.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	if k, ok := msg.(tea.KeyMsg); ok {
		km := p.KeyMap
		switch {
		case key.Matches(k, km.Select):
			return p, common.Next(common.StepReview)
		case key.Matches(k, km.Back):
			return p, common.Back(common.StepReview)
		case key.Matches(k, km.Up):
			p.vp.LineUp(1)
		case key.Matches(k, km.Down):
			p.vp.LineDown(1)
		case key.Matches(k, km.PageUp):
			p.vp.HalfViewUp()
		case key.Matches(k, km.PageDn):
			p.vp.HalfViewDown()
		case key.Matches(k, km.Left):
			p.vp.ScrollLeft(8)
		case key.Matches(k, km.Right):
			p.vp.ScrollRight(8)
		}
	}
	return p, nil
}

func (p *Page) header() string {
	s := p.Styles
	var b strings.Builder
	b.WriteString(s.Heading.Render("Review the plan") + "\n")
	b.WriteString(s.Muted.Render("Exactly what this prints:") + "\n")
	b.WriteString(s.Code.Render(common.WrapCommand(Command(p.Choices), p.width)) + "\n")
	if p.Choices.EnvRecord == nil && len(p.Choices.ProviderConfig) > 2 {
		b.WriteString(s.Muted.Render(ansi.Wordwrap(fmt.Sprintf("Environment %s is created with the provider settings you gave.", p.Choices.Env), p.width, " ")) + "\n")
	}
	for _, w := range p.Choices.ProviderWarnings {
		b.WriteString(s.Warn.Render(ansi.Wordwrap("! "+w, p.width, " ")) + "\n")
	}
	return b.String()
}

func maxWidth(s string) int {
	w := 0
	for _, l := range strings.Split(s, "\n") {
		w = max(w, ansi.StringWidth(l))
	}
	return w
}

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) {
	p.width, p.height = w, h
	p.vp.Width = w
	p.vp.Height = max(3, h-strings.Count(p.header(), "\n")-2)
}

// Typing reports false: nothing to type.
func (p *Page) Typing() bool { return false }

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	sel := km.Select
	sel.SetHelp("enter", "deploy")
	scroll := key.NewBinding(key.WithKeys("down"), key.WithHelp("↑↓←→", "scroll"))
	return []key.Binding{sel, scroll, km.Back, km.Help, km.Quit}
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	km := p.KeyMap
	sel, back := km.Select, km.Back
	sel.SetHelp("enter", "deploy")
	back.SetHelp("esc", "back to the settings")
	return [][]key.Binding{{km.Up, km.Down, km.PageUp, km.PageDn, km.Left, km.Right}, {sel, back}}
}

// View renders the page.
func (p *Page) View() string {
	rule := p.Styles.Rule.Render(strings.Repeat("─", p.width))
	var more []string
	if !p.vp.AtBottom() {
		more = append(more, "↓ more below")
	}
	if wide := maxWidth(p.text); wide > p.width {
		more = append(more, "← → the wide lines")
	}
	return p.header() + rule + "\n" + p.vp.View() + "\n" + p.Styles.Muted.Render(strings.Join(more, " · "))
}
