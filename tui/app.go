package tui

import (
	"context"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/providers/host"
	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/components/footer"
	"k2.dev/k2/tui/components/header"
	"k2.dev/k2/tui/pages/artifact"
	"k2.dev/k2/tui/pages/deploy"
	"k2.dev/k2/tui/pages/done"
	"k2.dev/k2/tui/pages/environment"
	"k2.dev/k2/tui/pages/review"
	"k2.dev/k2/tui/pages/settings"
)

// Model is the installer: a header with the steps, the current page, and
// the key help at the bottom.
type Model struct {
	c      *common.Common
	step   common.Step
	pages  map[common.Step]common.Page
	help   bool
	ref    string
	resume string
	fatal  error // a resume that cannot start
	err    error
	width  int
	height int
}

// resumeMsg is the unfinished deploy --resume continues.
type resumeMsg struct {
	r   *backend.Resumable
	err error
}

// Init opens the first page, or looks up the deploy to resume.
func (m *Model) Init() tea.Cmd {
	if m.resume != "" {
		b, env := m.c.Backend, m.resume
		m.step = common.StepDeploy
		return func() tea.Msg {
			r, err := b.Unfinished(context.Background(), env)
			return resumeMsg{r, err}
		}
	}
	return m.show(common.StepArtifact, true)
}

// show makes step the current page, creating it if fresh or new.
func (m *Model) show(step common.Step, fresh bool) tea.Cmd {
	m.step = step
	p := m.pages[step]
	if p != nil && !fresh {
		m.size(p)
		return nil
	}
	if p == nil || step != common.StepEnvironment {
		p = m.newPage(step)
		m.pages[step] = p
	}
	m.size(p)
	return p.Init()
}

func (m *Model) newPage(step common.Step) common.Page {
	switch step {
	case common.StepArtifact:
		return artifact.New(m.c, m.ref)
	case common.StepEnvironment:
		return environment.New(m.c)
	case common.StepSettings:
		return settings.New(m.c)
	case common.StepReview:
		return review.New(m.c)
	case common.StepDeploy:
		return deploy.New(m.c)
	}
	return done.New(m.c)
}

func (m *Model) size(p common.Page) {
	if m.width > 0 {
		p.SetSize(m.bodyWidth(), m.bodyHeight())
	}
}

// The page gets the screen less a column of padding on each side, the
// header and its blank line, and the footer and its blank line.
func (m *Model) bodyWidth() int  { return max(20, m.width-2) }
func (m *Model) bodyHeight() int { return max(5, m.height-4) }

// Update routes messages: sizes and global keys here, the rest to the page.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
		for _, p := range m.pages {
			m.size(p)
		}
		return m, nil
	case resumeMsg:
		if msg.err != nil {
			m.fatal = msg.err
			return m, nil
		}
		ch := m.c.Choices
		ch.Artifact, ch.Env, ch.EnvRecord = msg.r.Artifact, msg.r.Env.Name, msg.r.Env
		ch.Provider = &host.Info{Plugin: host.Plugin{Name: msg.r.Env.Provider}}
		ch.Sets, ch.Resume, ch.Op = msg.r.Sets(), true, msg.r.Deployment.Op
		return m, m.show(common.StepDeploy, true)
	case common.NextMsg:
		if msg.From != m.step {
			return m, nil
		}
		return m, m.show(msg.From+1, true)
	case common.BackMsg:
		if msg.From != m.step || msg.From == common.StepArtifact {
			return m, nil
		}
		return m, m.show(msg.From-1, false)
	case common.QuitMsg:
		m.err = msg.Err
		return m, tea.Quit
	case tea.KeyMsg:
		if cmd, done := m.globalKey(msg); done {
			return m, cmd
		}
	}
	p := m.pages[m.step]
	if p == nil {
		return m, nil
	}
	p, cmd := p.Update(msg)
	m.pages[m.step] = p
	return m, cmd
}

// globalKey handles Ctrl-C, help and quit; done false passes the key on.
func (m *Model) globalKey(msg tea.KeyMsg) (tea.Cmd, bool) {
	km := m.c.KeyMap
	p := m.pages[m.step]
	if key.Matches(msg, km.Interrupt) {
		m.help = false
		if ip, ok := p.(common.Interrupter); ok {
			np, cmd, handled := ip.Interrupt()
			if handled {
				m.pages[m.step] = np
				return cmd, true
			}
		}
		return tea.Quit, true
	}
	if m.help {
		m.help = false // any key closes the help
		return nil, true
	}
	typing := p != nil && p.Typing()
	if msg.String() == "f1" || (!typing && key.Matches(msg, km.Help)) {
		m.help = true
		return nil, true
	}
	if m.fatal != nil && (key.Matches(msg, km.Quit) || key.Matches(msg, km.Select) || key.Matches(msg, km.Back)) {
		m.err = m.fatal
		return tea.Quit, true
	}
	if _, ok := p.(common.Interrupter); !ok && !typing && key.Matches(msg, km.Quit) {
		return tea.Quit, true
	}
	return nil, false
}

// View renders header, page and footer into exactly the terminal's size.
func (m *Model) View() string {
	if m.width == 0 {
		return ""
	}
	w, h := m.bodyWidth(), m.bodyHeight()
	p := m.pages[m.step]
	var body string
	var short []key.Binding
	switch {
	case m.fatal != nil:
		body = m.c.Styles.Error.Render(ansi.Wordwrap("✗ "+m.fatal.Error(), w, " "))
		short = []key.Binding{m.c.KeyMap.Quit}
	case p == nil:
		body = m.c.Styles.Muted.Render("looking up the deploy of " + m.resume + "…")
	case m.help:
		body = m.c.Styles.Heading.Render("Keys") + "\n\n" + footer.Full(m.c, append(p.FullHelp(), m.globalHelp()), w) +
			"\n\n" + m.c.Styles.Muted.Render("Press any key to close the help.")
	default:
		body = p.View()
		short = p.ShortHelp()
	}
	lines := []string{header.View(m.c, m.step, w), ""}
	lines = append(lines, fit(body, w, h)...)
	lines = append(lines, "", ansi.Truncate(footer.Short(m.c, short, w), w, "…"))
	for i, l := range lines {
		lines[i] = " " + l
	}
	return strings.Join(lines, "\n")
}

func (m *Model) globalHelp() []key.Binding {
	km := m.c.KeyMap
	return []key.Binding{km.Help, key.NewBinding(key.WithKeys("f1"), key.WithHelp("f1", "help while typing")), km.Quit, km.Interrupt}
}

// fit returns s as exactly h lines of at most w cells.
func fit(s string, w, h int) []string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > h {
		ls = ls[:h]
	}
	for i, l := range ls {
		ls[i] = ansi.Truncate(l, w, "…")
	}
	for len(ls) < h {
		ls = append(ls, "")
	}
	return ls
}

// Step is the page shown.
func (m *Model) Step() common.Step { return m.step }

// Page returns the page of step, nil before it was shown.
func (m *Model) Page(step common.Step) common.Page { return m.pages[step] }

// Choices are the user's choices so far.
func (m *Model) Choices() *common.Choices { return m.c.Choices }
