// Package artifact is the installer's first page: type a reference, pick
// an artifact from the local store, or build a K8sfile directory (with its
// progress), then see what the artifact holds.
package artifact

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	k2artifact "k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/components/list"
	"k2.dev/k2/tui/components/steps"
)

type mode int

const (
	choosing mode = iota
	working
	showing
)

// Page is the artifact page.
type Page struct {
	*common.Common
	mode          mode
	cursor        int // 0 the reference, 1..n the store, n+1 the directory
	ref, dir      textinput.Model
	store         *list.Model
	images        []k2artifact.Image
	err           error
	task          string // what working does
	started       time.Time
	logSeq        int // log lines before the task
	spinner       spinner.Model
	gen           int
	width, height int
	open          string // a reference to open at once (k2 install REF)
}

// Messages of the page's work.
type (
	storeMsg struct {
		images []k2artifact.Image
		err    error
	}
	openedMsg struct {
		gen int
		a   *k2artifact.Artifact
		sig sign.Summary
		err error
	}
	builtMsg struct {
		gen int
		ref string
		err error
	}
)

// New returns the page; ref, if not empty, is opened at once.
func New(c *common.Common, ref string) *Page {
	p := &Page{Common: c, open: ref}
	p.ref = input("name:tag or registry/name:tag")
	p.ref.SetValue(ref)
	p.dir = input("a directory with a K8sfile, e.g. ./examples/hello")
	p.spinner = spinner.New(spinner.WithSpinner(spinner.MiniDot), spinner.WithStyle(c.Styles.Running))
	p.store = list.New(c, nil)
	p.focus()
	return p
}

func input(placeholder string) textinput.Model {
	t := textinput.New()
	t.Placeholder = placeholder
	t.Prompt = ""
	t.CharLimit = 512
	t.Cursor.SetMode(0) // static: no blinking redraws
	return t
}

// Init lists the store and opens the reference given on the command line.
func (p *Page) Init() tea.Cmd {
	cmds := []tea.Cmd{p.listStore()}
	if p.open != "" {
		cmds = append(cmds, p.openRef(p.open))
		p.open = ""
	}
	return tea.Batch(cmds...)
}

func (p *Page) listStore() tea.Cmd {
	b := p.Backend
	return func() tea.Msg {
		imgs, err := b.ListArtifacts(context.Background())
		return storeMsg{imgs, err}
	}
}

func (p *Page) openRef(ref string) tea.Cmd {
	p.gen++
	gen, b := p.gen, p.Backend
	p.start("opening " + ref)
	return tea.Batch(p.spinner.Tick, func() tea.Msg {
		ctx := context.Background()
		a, err := b.OpenArtifact(ctx, ref)
		if err != nil {
			return openedMsg{gen: gen, err: err}
		}
		return openedMsg{gen: gen, a: a, sig: b.Signature(ctx, a)}
	})
}

func (p *Page) build(dir string) tea.Cmd {
	p.gen++
	gen, b := p.gen, p.Backend
	tag := Tag(dir)
	p.start(fmt.Sprintf("building %s as %s", dir, tag))
	return tea.Batch(p.spinner.Tick, func() tea.Msg {
		res, err := b.Build(context.Background(), dir, tag)
		if err != nil {
			return builtMsg{gen: gen, err: err}
		}
		return builtMsg{gen: gen, ref: res.Ref}
	})
}

func (p *Page) start(task string) {
	p.mode, p.task, p.started, p.err = working, task, p.Now(), nil
	_, p.logSeq = p.Backend.Log.Lines()
}

var tagUnsafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// Tag is the reference a directory is built as: its base name, lowercased,
// with the tag "latest".
func Tag(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	name := strings.Trim(tagUnsafe.ReplaceAllString(strings.ToLower(filepath.Base(abs)), "-"), "-._")
	if name == "" {
		name = "cluster"
	}
	return name + ":latest"
}

func (p *Page) rows() int { return len(p.images) + 2 }

func (p *Page) focus() {
	p.ref.Blur()
	p.dir.Blur()
	p.store.Focused = false
	switch {
	case p.cursor == 0:
		p.ref.Focus()
	case p.cursor == p.rows()-1:
		p.dir.Focus()
	default:
		p.store.Focused = true
		p.store.Cursor = p.cursor - 1
	}
}

// Update handles keys and the results of the page's work.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	switch msg := msg.(type) {
	case storeMsg:
		p.images = msg.images
		if msg.err != nil {
			p.err = fmt.Errorf("listing the local store: %w", msg.err)
		}
		items := make([]list.Item, len(p.images))
		for i, im := range p.images {
			items[i] = list.Item{Title: im.Ref, Detail: fmt.Sprintf("%s  %d layers  %s", short(im.Digest), im.Layers, output.Bytes(im.Size))}
		}
		p.store = list.New(p.Common, items)
		p.focus()
		return p, nil
	case openedMsg:
		if msg.gen != p.gen {
			return p, nil
		}
		if msg.err != nil {
			p.mode, p.err = choosing, msg.err
			return p, nil
		}
		p.Choices.Artifact, p.Choices.Signature = msg.a, msg.sig
		p.mode = showing
		return p, nil
	case builtMsg:
		if msg.gen != p.gen {
			return p, nil
		}
		if msg.err != nil {
			p.mode, p.err = choosing, msg.err
			return p, nil
		}
		p.ref.SetValue(msg.ref)
		return p, tea.Batch(p.listStore(), p.openRef(msg.ref))
	case spinner.TickMsg:
		if p.mode != working {
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

func (p *Page) key(msg tea.KeyMsg) (common.Page, tea.Cmd) {
	km := p.KeyMap
	switch p.mode {
	case working:
		if key.Matches(msg, km.Back) { // forget the task
			p.gen++
			p.mode = choosing
		}
		return p, nil
	case showing:
		switch {
		case key.Matches(msg, km.Select):
			return p, common.Next(common.StepArtifact)
		case key.Matches(msg, km.Back):
			p.mode = choosing
			p.Choices.Artifact = nil
		}
		return p, nil
	}
	switch {
	case msg.Type == tea.KeyUp || msg.Type == tea.KeyShiftTab || (!p.Typing() && key.Matches(msg, km.Up)):
		if p.cursor > 0 {
			p.cursor--
		}
		p.focus()
		return p, nil
	case msg.Type == tea.KeyDown || msg.Type == tea.KeyTab || (!p.Typing() && key.Matches(msg, km.Down)):
		if p.cursor < p.rows()-1 {
			p.cursor++
		}
		p.focus()
		return p, nil
	case key.Matches(msg, km.Select):
		p.err = nil
		switch {
		case p.cursor == 0:
			ref := strings.TrimSpace(p.ref.Value())
			if ref == "" {
				p.err = fmt.Errorf("type a reference such as hello:v1, or pick one below")
				return p, nil
			}
			return p, p.openRef(ref)
		case p.cursor == p.rows()-1:
			dir := strings.TrimSpace(p.dir.Value())
			if dir == "" {
				p.err = fmt.Errorf("type the directory that holds the K8sfile")
				return p, nil
			}
			return p, p.build(dir)
		default:
			return p, p.openRef(p.images[p.cursor-1].Ref)
		}
	}
	var cmd tea.Cmd
	switch {
	case p.cursor == 0:
		p.ref, cmd = p.ref.Update(msg)
	case p.cursor == p.rows()-1:
		p.dir, cmd = p.dir.Update(msg)
	}
	return p, cmd
}

// Typing reports whether a text field has focus.
func (p *Page) Typing() bool {
	return p.mode == choosing && (p.cursor == 0 || p.cursor == p.rows()-1)
}

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) {
	p.width, p.height = w, h
	p.ref.Width = max(10, w-16)
	p.dir.Width = max(10, w-16)
}

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	switch p.mode {
	case working:
		return []key.Binding{help(km.Back, "cancel")}
	case showing:
		return []key.Binding{help(km.Select, "use it"), help(km.Back, "choose another"), km.Help, km.Quit}
	}
	h := []key.Binding{help(km.Select, "open"), key.NewBinding(key.WithKeys("down"), key.WithHelp("↑↓", "move"))}
	if p.Typing() {
		return append(h, key.NewBinding(key.WithKeys("f1"), key.WithHelp("f1", "help")), help(km.Interrupt, "quit"))
	}
	return append(h, km.Help, km.Quit)
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	km := p.KeyMap
	return [][]key.Binding{{km.Up, km.Down, km.Next, km.Prev}, {help(km.Select, "open / build / use"), help(km.Back, "back")}}
}

func help(b key.Binding, desc string) key.Binding {
	b.SetHelp(b.Help().Key, desc)
	return b
}

// View renders the page.
func (p *Page) View() string {
	switch p.mode {
	case working:
		return p.viewWorking()
	case showing:
		return Contents(p.Common, p.Choices.Artifact, p.Choices.Signature, p.width)
	}
	s := p.Styles
	var b strings.Builder
	b.WriteString(s.Heading.Render("Which cluster artifact?") + "\n")
	b.WriteString(s.Muted.Render("Type a reference, pick one from the local store, or build a K8sfile directory.") + "\n\n")
	marker := func(row int) string {
		if p.cursor == row {
			return s.Selected.Render("› ")
		}
		return "  "
	}
	b.WriteString(marker(0) + s.Label.Render("Reference  ") + p.ref.View() + "\n\n")
	b.WriteString("  " + s.Heading.Render("In the local store") + "\n")
	storeHeight := max(1, p.height-13)
	if len(p.images) == 0 {
		b.WriteString("    " + s.Muted.Render("(empty: build one below, or k2 pull a reference)") + "\n")
	} else {
		for _, l := range strings.Split(p.store.View(p.width-2, storeHeight), "\n") {
			b.WriteString("  " + l + "\n")
		}
	}
	b.WriteString("\n  " + s.Heading.Render("Build a K8sfile directory") + "\n")
	dirLine := marker(p.rows()-1) + s.Label.Render("Directory  ") + p.dir.View()
	b.WriteString(dirLine + "\n")
	if d := strings.TrimSpace(p.dir.Value()); d != "" {
		b.WriteString("             " + s.Muted.Render("builds it as "+Tag(d)) + "\n")
	}
	if p.err != nil {
		b.WriteString("\n" + errorLines(p.Common, p.err, p.width))
	}
	return b.String()
}

func (p *Page) viewWorking() string {
	s := p.Styles
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s  %s\n\n", p.spinner.View(), s.Heading.Render(p.task), s.Muted.Render(steps.Duration(p.Now().Sub(p.started))))
	lines, seq := p.Backend.Log.Lines()
	if n := seq - p.logSeq; n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	if max := p.height - 3; len(lines) > max && max > 0 {
		lines = lines[len(lines)-max:]
	}
	for _, l := range lines {
		b.WriteString(s.Muted.Render(ansi.Truncate(l, p.width, "…")) + "\n")
	}
	return b.String()
}

// errorLines renders err wrapped to width.
func errorLines(c *common.Common, err error, width int) string {
	return c.Styles.Error.Render(ansi.Wordwrap("✗ "+err.Error(), width, " "))
}

func short(d string) string {
	if i := strings.Index(d, ":"); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}
