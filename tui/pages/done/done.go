// Package done is the installer's last page: where the kubeconfig is, a
// kubectl command to try, the Apps' URLs and `k2 status` of the new
// environment.
package done

import (
	"context"
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/bubbles/viewport"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
)

// Page is the done page.
type Page struct {
	*common.Common
	status  *backend.Status
	err     error
	loaded  bool
	vp      viewport.Model
	spinner spinner.Model
	width   int
	height  int
}

type statusMsg struct {
	st  *backend.Status
	err error
}

// New returns the page.
func New(c *common.Common) *Page {
	return &Page{Common: c, vp: viewport.New(0, 0),
		spinner: spinner.New(spinner.WithSpinner(spinner.MiniDot), spinner.WithStyle(c.Styles.Running))}
}

// Init asks for the environment's status.
func (p *Page) Init() tea.Cmd {
	b, env := p.Backend, p.Choices.Env
	return tea.Batch(p.spinner.Tick, func() tea.Msg {
		st, err := b.Status(context.Background(), env)
		return statusMsg{st, err}
	})
}

// Update shows the status, scrolls and quits.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	switch msg := msg.(type) {
	case statusMsg:
		p.status, p.err, p.loaded = msg.st, msg.err, true
		if msg.st != nil {
			p.vp.SetContent(strings.TrimRight(msg.st.Text, "\n"))
		}
		p.SetSize(p.width, p.height)
	case spinner.TickMsg:
		if p.loaded {
			return p, nil
		}
		var cmd tea.Cmd
		p.spinner, cmd = p.spinner.Update(msg)
		return p, cmd
	case tea.KeyMsg:
		km := p.KeyMap
		switch {
		case key.Matches(msg, km.Quit), key.Matches(msg, km.Select):
			return p, common.Quit(nil)
		case key.Matches(msg, km.Up):
			p.vp.LineUp(1)
		case key.Matches(msg, km.Down):
			p.vp.LineDown(1)
		case key.Matches(msg, km.PageUp):
			p.vp.HalfViewUp()
		case key.Matches(msg, km.PageDn):
			p.vp.HalfViewDown()
		}
	}
	return p, nil
}

// Kubectl is the command the page suggests for env.
func Kubectl(env string) string {
	return `kubectl --kubeconfig "$(k2 kubeconfig ` + env + ` --path)" get nodes,apps -A`
}

func (p *Page) header() string {
	s := p.Styles
	ch := p.Choices
	var b strings.Builder
	b.WriteString(s.OK.Render(fmt.Sprintf("✓ %s runs %s", ch.Env, ch.Artifact.Ref)) + "\n\n")
	field := func(label, value string) {
		lines := strings.Split(ansi.Hardwrap(value, max(20, p.width-12), true), "\n")
		for i, l := range lines {
			if i > 0 {
				label = ""
			}
			b.WriteString(s.Label.Render(fmt.Sprintf("%-12s", label)) + l + "\n")
		}
	}
	if !p.loaded {
		b.WriteString(p.spinner.View() + " " + s.Muted.Render("k2 status "+ch.Env+"…") + "\n")
		return b.String()
	}
	if p.err != nil {
		b.WriteString(s.Error.Render(ansi.Wordwrap("✗ k2 status "+ch.Env+": "+p.err.Error(), p.width, " ")) + "\n")
	}
	st := p.status
	if st == nil {
		return b.String()
	}
	field("Kubeconfig", st.Kubeconfig)
	b.WriteString(s.Label.Render("Try") + "\n  " + s.Code.Render(Kubectl(ch.Env)) + "\n")
	if len(st.Apps) == 0 {
		field("Apps", s.Muted.Render("none"))
	}
	for i, a := range st.Apps {
		label := ""
		if i == 0 {
			label = "Apps"
		}
		url := a.URL
		if url == "" {
			url = "(no URL)"
		}
		ready := s.Warn.Render("not ready yet")
		if a.Ready {
			ready = s.OK.Render("ready")
		}
		field(label, fmt.Sprintf("%s/%s  %s  %s", a.Namespace, a.Name, url, ready))
	}
	health := s.OK.Render(fmt.Sprintf("healthy: %d of %d nodes Ready", st.NodesReady, st.Nodes))
	if !st.Healthy {
		health = s.Warn.Render(fmt.Sprintf("not healthy yet: %d of %d nodes Ready", st.NodesReady, st.Nodes))
	}
	field("Status", health+s.Muted.Render("  (k2 status "+ch.Env+")"))
	return b.String()
}

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) {
	p.width, p.height = w, h
	p.vp.Width = w
	p.vp.Height = max(1, h-strings.Count(p.header(), "\n")-1)
}

// Typing reports false: nothing to type.
func (p *Page) Typing() bool { return false }

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	q := km.Quit
	q.SetHelp("q/enter", "quit")
	scroll := key.NewBinding(key.WithKeys("down"), key.WithHelp("↑↓", "scroll status"))
	return []key.Binding{q, scroll, km.Help}
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	km := p.KeyMap
	return [][]key.Binding{{km.Up, km.Down, km.PageUp, km.PageDn}, {km.Quit}}
}

// View renders the page.
func (p *Page) View() string {
	h := p.header()
	if p.status == nil {
		return h
	}
	return h + p.Styles.Rule.Render(strings.Repeat("─", p.width)) + "\n" + p.vp.View()
}

// Summary is what the installer prints after it leaves the screen, so the
// paths and commands stay in the terminal's scrollback.
func Summary(ch *common.Choices, st *backend.Status) string {
	if st == nil {
		return fmt.Sprintf("%s runs %s\nstatus: k2 status %s\n", ch.Env, ch.Artifact.Ref, ch.Env)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s runs %s\nkubeconfig: %s\ntry: %s\n", ch.Env, ch.Artifact.Ref, st.Kubeconfig, Kubectl(ch.Env))
	for _, a := range st.Apps {
		if a.URL != "" {
			fmt.Fprintf(&b, "app %s/%s: %s\n", a.Namespace, a.Name, a.URL)
		}
	}
	fmt.Fprintf(&b, "status: k2 status %s\n", ch.Env)
	return b.String()
}

// Status is the status the page shows, nil before it is loaded.
func (p *Page) Status() *backend.Status { return p.status }
