// Package steps shows a deploy as it runs: one row per step of the engine
// and, under the step that is running (or failed), one row per machine or
// item, each with its state, last message, progress and elapsed time. It
// is fed engine events (Apply) and knows nothing else about deploys.
package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/tui/common"
)

// State is where a row stands.
type State int

// Row states.
const (
	Pending State = iota
	Running
	Done
	Skipped // done by an earlier run of the deployment
	Failed
	Stopped // interrupted by Ctrl-C: resumable
	Cleaning
	Cleaned
)

// Row is a step or one of its items.
type Row struct {
	Name    string
	State   State
	Started time.Time
	Elapsed time.Duration
	Message string
	Percent int
	Attempt int
	Error   string
	Items   []*Row
}

// Model holds the rows of one deploy.
type Model struct {
	*common.Common
	Rows    []*Row
	spinner spinner.Model
}

// New returns an empty model.
func New(c *common.Common) *Model {
	sp := spinner.New(spinner.WithSpinner(spinner.MiniDot), spinner.WithStyle(c.Styles.Running))
	return &Model{Common: c, spinner: sp}
}

// Tick returns the command that animates the spinner.
func (m *Model) Tick() tea.Cmd { return m.spinner.Tick }

// Update advances the spinner.
func (m *Model) Update(msg tea.Msg) tea.Cmd {
	if _, ok := msg.(spinner.TickMsg); !ok {
		return nil
	}
	var cmd tea.Cmd
	m.spinner, cmd = m.spinner.Update(msg)
	return cmd
}

func (m *Model) row(name string) *Row {
	for _, r := range m.Rows {
		if r.Name == name {
			return r
		}
	}
	r := &Row{Name: name}
	m.Rows = append(m.Rows, r)
	return r
}

func (r *Row) item(name string) *Row {
	for _, it := range r.Items {
		if it.Name == name {
			return it
		}
	}
	it := &Row{Name: name}
	r.Items = append(r.Items, it)
	slices.SortFunc(r.Items, func(a, b *Row) int { return strings.Compare(a.Name, b.Name) })
	return it
}

// Apply records one event.
func (m *Model) Apply(e engine.Event) {
	if e.Kind == engine.EventRunStarted {
		// A new run (a retry, a resume, a roll back) reports every step
		// again: done ones as skipped.
		rows := make([]*Row, 0, len(e.Steps))
		for _, s := range e.Steps {
			rows = append(rows, &Row{Name: s})
		}
		m.Rows = rows
		return
	}
	r := m.row(e.Step)
	target := r
	if e.Machine != "" && e.Kind != engine.EventStepFailed {
		target = r.item(e.Machine)
	}
	switch e.Kind {
	case engine.EventStepStarted, engine.EventItemStarted:
		target.State, target.Started, target.Attempt, target.Error = Running, e.Time, e.Attempt, ""
		target.Message, target.Percent = "", 0
		if target == r {
			r.Items = nil
		}
	case engine.EventStepDone, engine.EventItemDone:
		target.State, target.Elapsed, target.Percent = Done, e.Elapsed, 0
	case engine.EventStepSkipped, engine.EventItemSkipped:
		target.State = Skipped
	case engine.EventStepFailed, engine.EventItemFailed:
		st := Failed
		if errors.Is(e.Err, context.Canceled) {
			st = Stopped
		}
		target.State, target.Elapsed, target.Error = st, e.Elapsed, e.Error
		if e.Kind == engine.EventStepFailed && e.Machine != "" {
			// The step failed because of this item: its row says why.
			if it := r.item(e.Machine); it.State != st {
				it.State, it.Error = st, e.Error
			}
			target.Error = "failed: " + strings.ReplaceAll(e.Machine, "/", " ")
		}
	case engine.EventCleanupStarted:
		r.State, r.Started, r.Message = Cleaning, e.Time, ""
	case engine.EventCleanupDone:
		r.State, r.Elapsed = Cleaned, e.Elapsed
	case engine.EventProgress:
		target.Message, target.Percent = e.Message, e.Percent
		if target.State == Pending {
			target.State, target.Started = Running, e.Time
		}
	}
}

// Failed returns the failed step, nil if none.
func (m *Model) Failed() *Row {
	for _, r := range m.Rows {
		if r.State == Failed {
			return r
		}
	}
	return nil
}

// View renders the rows into width×height, scrolled to keep the running
// or failed step in sight.
func (m *Model) View(width, height int) string {
	var lines []string
	focus := -1
	for _, r := range m.Rows {
		if focus < 0 && (r.State == Running || r.State == Failed || r.State == Cleaning) {
			focus = len(lines)
		}
		lines = append(lines, m.line(r, 0, width))
		if r.State == Running || r.State == Failed || r.State == Stopped || r.State == Cleaning {
			for _, it := range r.Items {
				lines = append(lines, m.line(it, 1, width))
			}
		}
	}
	if height > 0 && len(lines) > height {
		off := 0
		if focus >= 0 {
			off = max(0, min(focus-height/3, len(lines)-height))
		} else {
			off = len(lines) - height
		}
		lines = lines[off : off+height]
	}
	return strings.Join(lines, "\n")
}

const (
	nameWidth    = 22
	elapsedWidth = 7
	barWidth     = 10
)

func (m *Model) line(r *Row, depth, width int) string {
	icon, st := "·", m.Styles.Muted
	switch r.State {
	case Running, Cleaning:
		icon, st = m.spinner.View(), m.Styles.Running
	case Done:
		icon, st = m.Styles.OK.Render("✓"), m.Styles.Heading
	case Skipped:
		icon, st = m.Styles.OK.Render("✓"), m.Styles.Muted
	case Failed:
		icon, st = m.Styles.Error.Render("✗"), m.Styles.Error
	case Stopped:
		icon, st = m.Styles.Warn.Render("■"), m.Styles.Warn
	case Cleaned:
		icon, st = m.Styles.Warn.Render("↺"), m.Styles.Muted
	default:
		icon = m.Styles.Muted.Render(icon)
	}
	indent := strings.Repeat("    ", depth)
	name := strings.ReplaceAll(r.Name, "/", " ")
	nw := nameWidth - len(indent)
	left := indent + icon + " " + st.Render(fit(name, nw))

	var elapsed string
	switch r.State {
	case Running, Cleaning:
		elapsed = Duration(m.Now().Sub(r.Started))
	case Done, Failed, Stopped, Cleaned:
		elapsed = Duration(r.Elapsed)
	case Skipped:
		elapsed = "earlier"
	}
	msg := r.Message
	switch {
	case r.State == Failed && r.Error != "":
		msg = r.Error
	case r.State == Stopped:
		msg = "stopped: resumable"
	case r.State == Skipped:
		msg = "done by an earlier run"
	case r.State == Cleaning:
		msg = "rolling back " + msg
	case r.State == Cleaned:
		msg = "rolled back"
	case (r.State == Done) && len(r.Items) > 0 && depth == 0:
		names := make([]string, len(r.Items))
		for i, it := range r.Items {
			names[i] = strings.ReplaceAll(it.Name, "/", " ")
		}
		msg = strings.Join(names, ", ")
	}
	if r.Attempt > 1 && (r.State == Running || r.State == Failed) {
		msg = fmt.Sprintf("(attempt %d) %s", r.Attempt, msg)
	}
	bar := ""
	if r.State == Running && r.Percent > 0 && r.Percent < 100 {
		full := r.Percent * barWidth / 100
		bar = " " + m.Styles.Running.Render(strings.Repeat("█", full)) + m.Styles.Muted.Render(strings.Repeat("░", barWidth-full)) + fmt.Sprintf(" %3d%%", r.Percent)
	}
	room := width - ansi.StringWidth(left) - ansi.StringWidth(bar) - elapsedWidth - 3
	msgStyle := m.Styles.Muted
	if r.State == Failed {
		msgStyle = m.Styles.Error
	}
	body := left + "  " + msgStyle.Render(fit(msg, max(room, 0))) + bar
	return body + " " + strings.Repeat(" ", max(0, width-ansi.StringWidth(body)-elapsedWidth-1)) + m.Styles.Muted.Render(fmt.Sprintf("%*s", elapsedWidth, elapsed))
}

// fit pads or truncates s to exactly w cells.
func fit(s string, w int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if ansi.StringWidth(s) > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-ansi.StringWidth(s))
}

// Duration renders d for people: 0.4s, 12.3s, 1m05s, 1h02m.
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		d = 0
		fallthrough
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
