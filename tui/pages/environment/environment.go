// Package environment is the installer's second page: pick an existing
// environment or name a new one, then a provider from the discovered
// plugins, each with its capabilities; providers that cannot make the
// artifact's machines are shown disabled with the plan check's reason.
package environment

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/state"
	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/components/list"
)

// DefaultEnv is the name offered for a new environment (k2 deploy's).
const DefaultEnv = "default"

// Page is the environment and provider page.
type Page struct {
	*common.Common
	envs      []backend.EnvSummary
	providers []host.Info
	loaded    int // 2 when both lists are in
	errs      []error
	name      textinput.Model
	envCursor int // 0 the new name, 1.. the environments
	envList   *list.Model
	provList  *list.Model
	section   int // 0 environments, 1 providers
	err       error
	spinner   spinner.Model
	width     int
	height    int
}

type (
	envsMsg struct {
		envs []backend.EnvSummary
		err  error
	}
	providersMsg struct {
		infos []host.Info
		err   error
	}
)

// New returns the page.
func New(c *common.Common) *Page {
	p := &Page{Common: c}
	p.name = textinput.New()
	p.name.Prompt = ""
	p.name.CharLimit = state.MaxEnvName
	p.name.Placeholder = "a new environment's name, e.g. dev"
	p.name.Cursor.SetMode(0)
	p.spinner = spinner.New(spinner.WithSpinner(spinner.MiniDot), spinner.WithStyle(c.Styles.Running))
	p.envList = list.New(c, nil)
	p.provList = list.New(c, nil)
	return p
}

// Init loads the environments and asks every provider plugin to describe
// itself.
func (p *Page) Init() tea.Cmd {
	if p.loaded == 2 {
		p.refreshProviders()
		return nil
	}
	b := p.Backend
	return tea.Batch(p.spinner.Tick,
		func() tea.Msg {
			envs, err := b.Environments(context.Background())
			return envsMsg{envs, err}
		},
		func() tea.Msg {
			infos, err := b.Providers(context.Background())
			return providersMsg{infos, err}
		})
}

// Update handles keys and the loaded lists.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	switch msg := msg.(type) {
	case envsMsg:
		p.loaded++
		p.envs = msg.envs
		if msg.err != nil {
			p.errs = append(p.errs, msg.err)
		}
		p.fillEnvs()
		return p, nil
	case providersMsg:
		p.loaded++
		p.providers = msg.infos
		if msg.err != nil {
			p.errs = append(p.errs, msg.err)
		}
		p.refreshProviders()
		return p, nil
	case spinner.TickMsg:
		if p.loaded == 2 {
			return p, nil
		}
		var cmd tea.Cmd
		p.spinner, cmd = p.spinner.Update(msg)
		return p, cmd
	case tea.KeyMsg:
		return p.key(msg)
	}
	return p, nil
}

func (p *Page) fillEnvs() {
	items := make([]list.Item, len(p.envs))
	taken := false
	for i, e := range p.envs {
		detail := "provider " + e.Provider
		if e.Last != nil {
			detail += fmt.Sprintf(" · last %s %s %s", e.Last.Op, e.Last.ArtifactRef, e.Last.Result)
		}
		items[i] = list.Item{Title: e.Name, Detail: detail}
		taken = taken || e.Name == DefaultEnv
	}
	p.envList = list.New(p.Common, items)
	if p.Choices.Env != "" {
		for i, e := range p.envs {
			if e.Name == p.Choices.Env {
				p.envCursor = i + 1
			}
		}
		if p.envCursor == 0 {
			p.name.SetValue(p.Choices.Env)
		}
	} else if !taken {
		p.name.SetValue(DefaultEnv)
	}
	p.focus()
}

// selectedEnv returns the environment chosen in the first section: the
// stored one, or nil and the new name.
func (p *Page) selectedEnv() (*state.Environment, string) {
	if p.envCursor > 0 && p.envCursor <= len(p.envs) {
		e := p.envs[p.envCursor-1].Environment
		return &e, e.Name
	}
	return nil, strings.TrimSpace(p.name.Value())
}

// refreshProviders recomputes which providers can serve the selected
// environment and the artifact.
func (p *Page) refreshProviders() {
	env, name := p.selectedEnv()
	check := env
	if check == nil {
		check = &state.Environment{Name: name, UID: "not-created-yet", Values: map[string]string{}}
		if state.ValidateEnvName(name) != nil {
			check.Name = "new"
		}
	}
	items := make([]list.Item, len(p.providers))
	for i, info := range p.providers {
		it := list.Item{Title: info.Name}
		if c := info.Capabilities; c != nil {
			it.Detail = fmt.Sprintf("%s · %s · %s", strings.Join(c.Architectures, ","), strings.Join(c.BootstrapMethods, ","), host.CapabilitySummary(*c))
		}
		switch {
		case env != nil && env.Provider != info.Name:
			it.Disabled, it.Note = true, fmt.Sprintf("environment %s uses provider %s", env.Name, env.Provider)
		default:
			if err := backend.CheckProvider(check, p.Choices.Artifact, info); err != nil {
				it.Disabled, it.Note = true, reason(err)
			}
		}
		items[i] = it
	}
	prev, _ := p.provList.Selected()
	p.provList = list.New(p.Common, items)
	p.provList.TitleWidth = 10
	switch {
	case env != nil:
		p.provList.Select(env.Provider)
	case p.Choices.Provider != nil:
		p.provList.Select(p.Choices.Provider.Name)
	case prev.Title != "":
		p.provList.Select(prev.Title)
	}
	p.focus()
}

// reason is err without its hint (the list has no room for it), the
// pools that fail the same way named once.
func reason(err error) string {
	var ue *usererr.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var order []string
	pools := map[string][]string{}
	for _, l := range strings.Split(err.Error(), "\n") {
		pool, rest := "", l
		if p, r, ok := strings.Cut(strings.TrimPrefix(l, "pool "), ": "); ok && strings.HasPrefix(l, "pool ") {
			pool, rest = p, r
		}
		if _, seen := pools[rest]; !seen {
			order = append(order, rest)
		}
		if pool != "" {
			pools[rest] = append(pools[rest], pool)
		} else if pools[rest] == nil {
			pools[rest] = []string{}
		}
	}
	out := make([]string, len(order))
	for i, rest := range order {
		switch ps := pools[rest]; len(ps) {
		case 0:
			out[i] = rest
		case 1:
			out[i] = "pool " + ps[0] + ": " + rest
		default:
			out[i] = "pools " + strings.Join(ps, ", ") + ": " + rest
		}
	}
	return strings.Join(out, "; ")
}

func (p *Page) focus() {
	p.name.Blur()
	p.envList.Focused, p.provList.Focused = false, false
	if p.section == 1 {
		p.provList.Focused = true
		return
	}
	if p.envCursor == 0 {
		p.name.Focus()
	} else {
		p.envList.Focused = true
		p.envList.Cursor = p.envCursor - 1
	}
}

func (p *Page) key(msg tea.KeyMsg) (common.Page, tea.Cmd) {
	km := p.KeyMap
	up := msg.Type == tea.KeyUp || (!p.Typing() && key.Matches(msg, km.Up))
	down := msg.Type == tea.KeyDown || (!p.Typing() && key.Matches(msg, km.Down))
	switch {
	case key.Matches(msg, km.Back):
		p.err = nil
		if p.section == 1 {
			p.section = 0
			p.focus()
			return p, nil
		}
		return p, common.Back(common.StepEnvironment)
	case key.Matches(msg, km.Next) && p.section == 0:
		return p.chooseEnv()
	case key.Matches(msg, km.Prev) && p.section == 1:
		p.section = 0
		p.focus()
		return p, nil
	case up && p.section == 0:
		if p.envCursor > 0 {
			p.envCursor--
			p.refreshProviders()
		}
		return p, nil
	case down && p.section == 0:
		if p.envCursor < len(p.envs) {
			p.envCursor++
			p.refreshProviders()
		}
		return p, nil
	case up:
		p.provList.Up()
		return p, nil
	case down:
		p.provList.Down()
		return p, nil
	case key.Matches(msg, km.Select):
		if p.section == 0 {
			return p.chooseEnv()
		}
		return p.chooseProvider()
	}
	if p.section == 0 && p.envCursor == 0 {
		var cmd tea.Cmd
		p.name, cmd = p.name.Update(msg)
		p.err = nil
		p.refreshProviders()
		return p, cmd
	}
	return p, nil
}

func (p *Page) chooseEnv() (common.Page, tea.Cmd) {
	if p.loaded < 2 {
		return p, nil
	}
	env, name := p.selectedEnv()
	if env == nil {
		if err := state.ValidateEnvName(name); err != nil {
			p.err = err
			return p, nil
		}
		for _, e := range p.envs {
			if e.Name == name {
				p.err = fmt.Errorf("environment %s exists: pick it in the list below", name)
				return p, nil
			}
		}
	}
	p.err = nil
	p.section = 1
	p.refreshProviders()
	return p, nil
}

func (p *Page) chooseProvider() (common.Page, tea.Cmd) {
	it, ok := p.provList.Selected()
	if !ok {
		p.err = errors.New("no provider can deploy this artifact here; see why beside each, or go back (esc) and pick another artifact")
		return p, nil
	}
	env, name := p.selectedEnv()
	for i := range p.providers {
		if p.providers[i].Name == it.Title {
			info := p.providers[i]
			p.Choices.Provider = &info
		}
	}
	if p.Choices.Env != name || (p.Choices.EnvRecord == nil) != (env == nil) {
		p.Choices.Sets, p.Choices.ProviderConfig = nil, nil // settings were for another environment
	}
	p.Choices.Env, p.Choices.EnvRecord = name, env
	return p, common.Next(common.StepEnvironment)
}

// Typing reports whether the new environment's name has focus.
func (p *Page) Typing() bool { return p.section == 0 && p.envCursor == 0 }

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) {
	p.width, p.height = w, h
	p.name.Width = max(10, w-20)
}

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	sel := km.Select
	sel.SetHelp("enter", "choose")
	back := km.Back
	back.SetHelp("esc", "back")
	h := []key.Binding{sel, back}
	if p.Typing() {
		return append(h, key.NewBinding(key.WithKeys("f1"), key.WithHelp("f1", "help")))
	}
	return append(h, km.Help, km.Quit)
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	km := p.KeyMap
	return [][]key.Binding{{km.Up, km.Down}, {km.Next, km.Prev, km.Select, km.Back}}
}

// View renders the page.
func (p *Page) View() string {
	s := p.Styles
	var b strings.Builder
	b.WriteString(s.Heading.Render("Where to?") + "\n")
	b.WriteString(s.Muted.Render("Pick an environment or name a new one, then the provider for its machines.") + "\n\n")
	if p.loaded < 2 {
		b.WriteString(p.spinner.View() + " " + s.Muted.Render("reading environments and asking the provider plugins…") + "\n")
		return b.String()
	}
	title := func(sec int, t string) string {
		if p.section == sec {
			return s.Selected.Render(t)
		}
		return s.Heading.Render(t)
	}
	b.WriteString(title(0, "Environment") + "\n")
	marker := "  "
	if p.section == 0 && p.envCursor == 0 {
		marker = s.Selected.Render("› ")
	}
	b.WriteString(marker + s.Label.Render("New  ") + p.name.View() + "\n")
	envHeight := 0
	if len(p.envs) > 0 {
		envHeight = min(len(p.envs), max(1, (p.height-12)/2))
		b.WriteString(p.envList.View(p.width, envHeight) + "\n")
	}
	b.WriteString("\n" + title(1, "Provider") + "\n")
	if len(p.providers) == 0 {
		b.WriteString("  " + s.Warn.Render("no provider plugins found (k2 plugin ls)") + "\n")
	} else {
		b.WriteString(p.provList.View(p.width, max(2, p.height-8-envHeight)) + "\n")
	}
	for _, err := range append(p.errs, p.err) {
		if err != nil {
			b.WriteString("\n" + s.Error.Render(ansi.Wordwrap("✗ "+err.Error(), p.width, " ")))
		}
	}
	return b.String()
}
