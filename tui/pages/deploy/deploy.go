// Package deploy is the installer's fifth page: the deploy, live. One row
// per engine step and, under the running one, per machine or layer, with a
// spinner or progress bar and elapsed time; `l` shows the log; a failure
// offers retry, roll back or quit (resume later); Ctrl-C asks before it
// stops the deploy, which stays resumable.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
	"k2.dev/k2/tui/components/logpane"
	"k2.dev/k2/tui/components/steps"
)

// Phase is where the deploy stands.
type Phase int

// Phases.
const (
	Running Phase = iota
	Stopping
	Succeeded
	Failed
	Interrupted
	RolledBack
)

// Page is the deploy page.
type Page struct {
	*common.Common
	rows    *steps.Model
	run     *engine.Running
	req     backend.DeployRequest
	phase   Phase
	started time.Time
	ended   time.Time
	err     error
	result  *engine.DeployResult
	rolling bool // the run is a roll back
	logs    bool
	confirm bool // the Ctrl-C question is open
	choice  int
	width   int
	height  int
}

type (
	eventMsg struct {
		run *engine.Running
		e   engine.Event
	}
	finishedMsg struct {
		run *engine.Running
		res *engine.DeployResult
		err error
	}
)

// New returns the page for the choices; Init starts the deploy.
func New(c *common.Common) *Page {
	ch := c.Choices
	req := backend.DeployRequest{Env: ch.Env, Artifact: ch.Artifact, Sets: ch.Sets, Op: ch.Op}
	if ch.EnvRecord == nil && ch.Provider != nil {
		req.Provider, req.ProviderConfig = ch.Provider.Name, ch.ProviderConfig
	}
	if ch.Resume {
		req.Resume = engine.ResumeRequired
	}
	return &Page{Common: c, rows: steps.New(c), req: req}
}

// Init starts the deploy.
func (p *Page) Init() tea.Cmd { return p.start(p.req) }

func (p *Page) start(req backend.DeployRequest) tea.Cmd {
	p.req = req
	p.phase, p.err, p.result, p.confirm, p.choice = Running, nil, nil, false, 0
	p.rolling = req.RollbackOnly
	p.started = p.Now()
	p.run = p.Backend.Deploy(context.Background(), req)
	return tea.Batch(p.rows.Tick(), next(p.run))
}

// next waits for run's next event, or its end.
func next(run *engine.Running) tea.Cmd {
	return func() tea.Msg {
		if e, ok := run.Next(); ok {
			return eventMsg{run, e}
		}
		res, err := run.Wait()
		return finishedMsg{run, res, err}
	}
}

// Update handles the deploy's events and keys.
func (p *Page) Update(msg tea.Msg) (common.Page, tea.Cmd) {
	switch msg := msg.(type) {
	case eventMsg:
		if msg.run != p.run {
			return p, nil
		}
		p.rows.Apply(msg.e)
		return p, next(p.run)
	case finishedMsg:
		if msg.run != p.run {
			return p, nil
		}
		p.finished(msg.res, msg.err)
		return p, nil
	case spinner.TickMsg:
		if p.phase != Running && p.phase != Stopping {
			return p, nil
		}
		return p, p.rows.Update(msg)
	case tea.KeyMsg:
		return p.key(msg)
	}
	return p, nil
}

func (p *Page) finished(res *engine.DeployResult, err error) {
	p.result, p.err, p.ended = res, err, p.Now()
	p.confirm, p.choice = false, 0
	switch {
	case err == nil && res != nil && res.Deployment.Result == state.RolledBack:
		p.phase = RolledBack
	case err == nil:
		p.phase = Succeeded
		p.Choices.Plan = res.Plan
	case errors.Is(err, context.Canceled):
		p.phase = Interrupted
	default:
		p.phase = Failed
	}
}

// choices are the actions offered now, each with its key.
func (p *Page) choices() []choice {
	km := p.KeyMap
	resume := choice{"Retry now", km.Retry, func() tea.Cmd { return p.resume(false) }}
	rollback := choice{"Roll back", km.Rollback, func() tea.Cmd { return p.resume(true) }}
	quit := choice{"Quit, resume later", km.Quit, func() tea.Cmd { return common.Quit(p.exitError()) }}
	switch p.phase {
	case Failed:
		if p.result == nil { // nothing was started: nothing to roll back
			return []choice{resume, {"Quit", km.Quit, quit.do}}
		}
		return []choice{resume, rollback, quit}
	case Interrupted:
		resume.label = "Resume now"
		return []choice{resume, rollback, quit}
	case RolledBack:
		return []choice{{"Quit", km.Quit, quit.do}}
	}
	return nil
}

type choice struct {
	label string
	key   key.Binding
	do    func() tea.Cmd
}

func (p *Page) resume(rollback bool) tea.Cmd {
	req := p.req
	req.Resume, req.RollbackOnly = engine.ResumeRequired, rollback
	if p.result == nil && !rollback {
		req.Resume = p.req.Resume // nothing began: start as the first time
	}
	return p.start(req)
}

// exitError is what the installer exits with after this page.
func (p *Page) exitError() error {
	env := p.Choices.Env
	switch p.phase {
	case Interrupted:
		return usererr.Wrap(usererr.KindInterrupted, fmt.Errorf("deploy of %s interrupted", env), ResumeHint(env))
	case Failed:
		var ue *usererr.Error
		if errors.As(p.err, &ue) {
			return p.err
		}
		return usererr.Wrap(usererr.KindFailure, p.err, ResumeHint(env))
	}
	return nil
}

// ResumeHint says how to continue env's deploy.
func ResumeHint(env string) string {
	return fmt.Sprintf("resume with 'k2 install --resume %s' (or 'k2 resume %s'), or delete what it made with 'k2 destroy %s'", env, env, env)
}

func (p *Page) key(msg tea.KeyMsg) (common.Page, tea.Cmd) {
	km := p.KeyMap
	if key.Matches(msg, km.Logs) {
		p.logs = !p.logs
		return p, nil
	}
	if p.confirm {
		switch {
		case key.Matches(msg, km.Back), key.Matches(msg, km.Left) && p.choice == 1, msg.String() == "n":
			p.confirm = false
		case key.Matches(msg, km.Left), key.Matches(msg, km.Right), key.Matches(msg, km.Next):
			p.choice = 1 - p.choice
		case msg.String() == "y" || msg.String() == "s":
			return p.stop()
		case key.Matches(msg, km.Select):
			if p.choice == 1 {
				return p.stop()
			}
			p.confirm = false
		}
		return p, nil
	}
	switch p.phase {
	case Running:
		if key.Matches(msg, km.Quit) {
			p.confirm, p.choice = true, 0
		}
		return p, nil
	case Succeeded:
		if key.Matches(msg, km.Select) {
			return p, common.Next(common.StepDeploy)
		}
		return p, nil
	}
	cs := p.choices()
	for _, c := range cs {
		if key.Matches(msg, c.key) {
			return p, c.do()
		}
	}
	switch {
	case key.Matches(msg, km.Left), key.Matches(msg, km.Prev):
		p.choice = (p.choice + len(cs) - 1) % max(1, len(cs))
	case key.Matches(msg, km.Right), key.Matches(msg, km.Next):
		p.choice = (p.choice + 1) % max(1, len(cs))
	case key.Matches(msg, km.Select) && len(cs) > 0:
		return p, cs[p.choice].do()
	}
	return p, nil
}

func (p *Page) stop() (common.Page, tea.Cmd) {
	p.confirm = false
	if p.phase == Running {
		p.phase = Stopping
		p.run.Stop()
	}
	return p, nil
}

// Interrupt handles Ctrl-C: while the deploy runs it asks first (a second
// Ctrl-C stops it); afterwards it lets the installer quit.
func (p *Page) Interrupt() (common.Page, tea.Cmd, bool) {
	switch p.phase {
	case Running:
		if p.confirm {
			pg, cmd := p.stop()
			return pg, cmd, true
		}
		p.confirm, p.choice = true, 0
		return p, nil, true
	case Stopping:
		return p, nil, true // it is journaling; it ends in a moment
	}
	return p, common.Quit(p.exitError()), true
}

// Typing reports false: nothing to type.
func (p *Page) Typing() bool { return false }

// SetSize sets the page's size.
func (p *Page) SetSize(w, h int) { p.width, p.height = w, h }

// ShortHelp is the footer.
func (p *Page) ShortHelp() []key.Binding {
	km := p.KeyMap
	logs := km.Logs
	if p.logs {
		logs.SetHelp("l", "hide logs")
	}
	switch p.phase {
	case Running:
		stop := km.Interrupt
		stop.SetHelp("ctrl+c", "stop (resumable)")
		return []key.Binding{logs, stop, km.Help}
	case Stopping:
		return []key.Binding{logs}
	case Succeeded:
		sel := km.Select
		sel.SetHelp("enter", "show the cluster")
		return []key.Binding{sel, logs, km.Help}
	}
	var out []key.Binding
	for _, c := range p.choices() {
		b := c.key
		b.SetHelp(b.Help().Key, strings.ToLower(c.label))
		out = append(out, b)
	}
	return append(out, logs, km.Help)
}

// FullHelp is the `?` screen.
func (p *Page) FullHelp() [][]key.Binding {
	km := p.KeyMap
	return [][]key.Binding{{km.Logs, km.Interrupt}, {km.Retry, km.Rollback, km.Quit}, {km.Left, km.Right, km.Select}}
}

// View renders the page.
func (p *Page) View() string {
	s := p.Styles
	w := p.width
	verb := "Deploying"
	if p.rolling {
		verb = "Rolling back"
	}
	title := s.Heading.Render(fmt.Sprintf("%s %s to %s", verb, p.Choices.Artifact.Ref, p.Choices.Env))
	if p.Choices.Provider != nil {
		title += s.Muted.Render(" with " + p.Choices.Provider.Name)
	}
	end := p.Now()
	if p.phase != Running && p.phase != Stopping {
		end = p.ended
	}
	clock := s.Muted.Render(steps.Duration(end.Sub(p.started)))
	title = ansi.Truncate(title, w-ansi.StringWidth(clock)-1, "…")
	head := title + strings.Repeat(" ", max(1, w-ansi.StringWidth(title)-ansi.StringWidth(clock))) + clock

	bottom := p.bottom()
	logH := 0
	if p.logs {
		logH = max(4, p.height/3)
	}
	rowsH := p.height - 2 - lines(bottom) - logH
	if bottom != "" {
		rowsH--
	}
	var b strings.Builder
	b.WriteString(head + "\n\n")
	rows := p.rows.View(w, max(1, rowsH))
	b.WriteString(rows)
	if pad := rowsH - lines(rows); pad > 0 {
		b.WriteString(strings.Repeat("\n", pad))
	}
	if bottom != "" {
		b.WriteString("\n\n" + bottom)
	}
	if p.logs {
		b.WriteString("\n" + logpane.View(p.Common, p.Backend.Log, w, logH))
	}
	return b.String()
}

func lines(s string) int {
	if s == "" {
		return 0
	}
	return strings.Count(s, "\n") + 1
}

// bottom is the status under the rows: the question, the outcome, the
// choices.
func (p *Page) bottom() string {
	s := p.Styles
	w := p.width
	env := p.Choices.Env
	wrap := func(st func(...string) string, text string) string {
		return st(ansi.Wordwrap(text, w, " "))
	}
	if p.confirm {
		inner := w - 4
		body := s.Heading.Render("Stop the deploy?") + "\n" +
			s.Muted.Render(ansi.Wordwrap("The step running now is interrupted; everything done so far is journaled, so nothing is lost. Continue later with 'k2 install --resume "+env+"' or 'k2 resume "+env+"'.", inner, " ")) + "\n" +
			p.menu([]string{"Keep deploying", "Stop (resumable)"})
		return s.Box.Width(w - 2).Render(body)
	}
	switch p.phase {
	case Stopping:
		return s.Warn.Render("■ stopping: finishing the journal…")
	case Succeeded:
		return s.OK.Render(fmt.Sprintf("✓ %s deployed in %s.", env, steps.Duration(p.ended.Sub(p.started)))) + " " + s.Muted.Render("Press enter to see the cluster.")
	case RolledBack:
		return wrap(s.Warn.Render, "↺ rolled back: the machines this deploy made are deleted and the deployment is recorded as rolled back.") + "\n" + p.menu(labels(p.choices()))
	case Interrupted:
		return s.Warn.Render("■ stopped. Nothing is lost: every step done is journaled.") + "\n" +
			wrap(s.Muted.Render, "Resume later with 'k2 install --resume "+env+"' (or 'k2 resume "+env+"').") + "\n" + p.menu(labels(p.choices()))
	case Failed:
		text := p.err.Error()
		hint := ""
		var ue *usererr.Error
		if errors.As(p.err, &ue) && ue.Hint != "" {
			text, hint = ue.Err.Error(), ue.Hint
		}
		where := "the deploy failed"
		var se *engine.StepError
		if errors.As(p.err, &se) {
			where = "the deploy failed at step " + se.Step
			if se.Machine != "" {
				where += " (" + strings.ReplaceAll(se.Machine, "/", " ") + ")"
			}
			if hint == "" {
				text = se.Err.Error()
			}
		}
		out := s.Error.Render("✗ "+where) + "\n" + clip(wrap(s.Error.Render, text), 4)
		if hint != "" {
			out += "\n" + clip(wrap(s.Muted.Render, hint), 2)
		}
		if p.result != nil {
			out += "\n" + wrap(s.Muted.Render, "Quitting keeps it resumable: 'k2 install --resume "+env+"' or 'k2 resume "+env+"'.")
		}
		return out + "\n" + p.menu(labels(p.choices()))
	}
	return ""
}

func labels(cs []choice) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = "[" + c.key.Help().Key + "] " + c.label
	}
	return out
}

// menu renders choices on one line, the selected one marked.
func (p *Page) menu(items []string) string {
	parts := make([]string, len(items))
	for i, it := range items {
		if i == p.choice {
			parts[i] = p.Styles.Selected.Render("› " + it)
		} else {
			parts[i] = "  " + it
		}
	}
	return strings.Join(parts, "  ")
}

// clip keeps the first n lines of s.
func clip(s string, n int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > n {
		ls = append(ls[:n-1], ls[n-1]+" …")
	}
	return strings.Join(ls, "\n")
}

// Phase reports where the deploy stands.
func (p *Page) Phase() Phase { return p.phase }

// Result is the finished deploy's result, nil before.
func (p *Page) Result() *engine.DeployResult { return p.result }

// StopAndWait stops the deploy if it still runs (the program ended under
// it: a signal, a lost terminal) and waits until it is journaled; it
// returns the interruption, nil if nothing was running.
func (p *Page) StopAndWait() error {
	if p.run == nil {
		return nil
	}
	select {
	case <-p.run.Done():
		return nil
	default:
	}
	p.run.Stop()
	_, err := p.run.Wait()
	if err == nil {
		return nil
	}
	return fmt.Errorf("deploy of %s interrupted: %w", p.Choices.Env, err)
}
