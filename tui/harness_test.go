package tui_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/bubbles/spinner"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/google/go-cmp/cmp"
	"github.com/muesli/termenv"

	"k2.dev/k2/tui"
)

// updating reports -update: rewrite the golden files in testdata. The flag
// is teatest's (its golden package declares it), which this package links.
func updating() bool { return flag.Lookup("update").Value.String() == "true" }

// pluginDir holds the plugins the tests discover: the local provider and
// the example provider, each built as an external plugin once.
var pluginDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "k2-tui-test")
	if err != nil {
		panic(err)
	}
	for name, pkg := range map[string]string{
		"k2-provider-local":   "k2.dev/k2/tui/testdata/localplugin",
		"k2-provider-example": "k2.dev/k2/examples/provider-example",
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Println("building", pkg+":", err)
			os.Exit(1)
		}
	}
	pluginDir = dir
	// huh's base theme uses lipgloss's default renderer: no colour in goldens.
	lipgloss.SetColorProfile(termenv.Ascii)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// driver runs a tui.Model the way tea.Program would, without a terminal:
// it calls Update, runs the commands in goroutines and feeds their messages
// back, so tests can wait for what the screen shows. Spinner and cursor
// animation messages are dropped: frames stay still in goldens.
type driver struct {
	t    *testing.T
	m    *tui.Model
	msgs chan tea.Msg
	quit bool
	// views are every screen rendered, for seen.
	views []string
}

const (
	width  = 80
	height = 24
)

func drive(t *testing.T, m *tui.Model) *driver {
	d := &driver{t: t, m: m, msgs: make(chan tea.Msg, 1000)}
	d.send(tea.WindowSizeMsg{Width: width, Height: height})
	d.run(m.Init())
	d.settle()
	return d
}

// run executes cmd in the background; its message comes back on d.msgs.
func (d *driver) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	go func() {
		if msg := cmd(); msg != nil {
			d.msgs <- msg
		}
	}()
}

var cmdType = reflect.TypeOf(tea.Cmd(nil))

// runNow runs cmd and delivers its message before returning, unless cmd
// takes long (an animation timer): then its message comes later.
func (d *driver) runNow(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	ch := make(chan tea.Msg, 1)
	go func() { ch <- cmd() }()
	select {
	case msg := <-ch:
		if msg != nil {
			d.send(msg)
		}
	case <-time.After(50 * time.Millisecond):
		go func() {
			if msg := <-ch; msg != nil {
				d.msgs <- msg
			}
		}()
	}
}

// send delivers msg to the model at once.
func (d *driver) send(msg tea.Msg) {
	d.t.Helper()
	switch msg := msg.(type) {
	case tea.BatchMsg:
		for _, c := range msg {
			d.run(c)
		}
		return
	case spinner.TickMsg:
		return
	case tea.QuitMsg:
		d.quit = true
		return
	}
	v := reflect.ValueOf(msg)
	switch name := fmt.Sprintf("%T", msg); {
	case v.Kind() == reflect.Slice && v.Type().Elem() == cmdType: // tea.Sequence
		for i := range v.Len() {
			d.runNow(v.Index(i).Interface().(tea.Cmd))
		}
		return
	case strings.Contains(name, "windowSizeMsg"): // tea.WindowSize()
		msg = tea.WindowSizeMsg{Width: width, Height: height}
	case strings.Contains(name, "link") || strings.Contains(name, "Blink"):
		return
	}
	_, cmd := d.m.Update(msg)
	d.views = append(d.views, d.m.View())
	d.run(cmd)
}

// seen reports whether any screen so far showed s.
func (d *driver) seen(s string) bool {
	for _, v := range d.views {
		if strings.Contains(v, s) {
			return true
		}
	}
	return false
}

// settle handles messages until none arrives for a moment.
func (d *driver) settle() {
	d.t.Helper()
	for {
		select {
		case msg := <-d.msgs:
			d.send(msg)
		case <-time.After(150 * time.Millisecond):
			return
		}
	}
}

// until handles messages until cond holds, failing after timeout.
func (d *driver) until(what string, timeout time.Duration, cond func() bool) {
	d.t.Helper()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case msg := <-d.msgs:
			d.send(msg)
		case <-deadline:
			d.t.Fatalf("waiting for %s: timed out; screen:\n%s", what, d.m.View())
		}
	}
}

// untilScreen waits for text on the screen.
func (d *driver) untilScreen(text string, timeout time.Duration) {
	d.t.Helper()
	d.until(fmt.Sprintf("%q on the screen", text), timeout, func() bool { return strings.Contains(d.m.View(), text) })
}

// key sends one key: "enter", "esc", "ctrl+c", "tab", "up", "down", or a
// rune.
func (d *driver) key(k string) {
	d.t.Helper()
	var msg tea.KeyMsg
	switch k {
	case "enter":
		msg = tea.KeyMsg{Type: tea.KeyEnter}
	case "esc":
		msg = tea.KeyMsg{Type: tea.KeyEsc}
	case "ctrl+c":
		msg = tea.KeyMsg{Type: tea.KeyCtrlC}
	case "ctrl+u":
		msg = tea.KeyMsg{Type: tea.KeyCtrlU}
	case "tab":
		msg = tea.KeyMsg{Type: tea.KeyTab}
	case "shift+tab":
		msg = tea.KeyMsg{Type: tea.KeyShiftTab}
	case "up":
		msg = tea.KeyMsg{Type: tea.KeyUp}
	case "down":
		msg = tea.KeyMsg{Type: tea.KeyDown}
	case "f1":
		msg = tea.KeyMsg{Type: tea.KeyF1}
	case "backspace":
		msg = tea.KeyMsg{Type: tea.KeyBackspace}
	default:
		msg = tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune(k)}
	}
	d.send(msg)
	d.settle()
}

// typ types s.
func (d *driver) typ(s string) {
	d.t.Helper()
	for _, r := range s {
		d.send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
	}
	d.settle()
}

// clear empties the focused text field.
func (d *driver) clear() {
	d.t.Helper()
	for range 60 {
		d.send(tea.KeyMsg{Type: tea.KeyBackspace})
	}
	d.settle()
}

// Masks make goldens stable: times, digests, request ids, temporary paths.
var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`sha256:[0-9a-f]{6,64}…?`), "sha256:<digest>"},
	{regexp.MustCompile(`k2-[0-9a-f]{32}`), "k2-<request-id>"},
	{regexp.MustCompile(` *\b(\d+(\.\d+)?s|\d+m\d\ds|\d+h\d\dm)\b`), timeMask},
	{regexp.MustCompile(`\b\d\d:\d\d:\d\d\b`), "<clock>"},
	{regexp.MustCompile(`/tmp/[^\s"'│]*`), "/tmp/<dir>"},
}

// Mask applies the masks to s. A time after two spaces or more (a
// right-aligned column) keeps the width it had with them.
func Mask(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllStringFunc(s, func(x string) string {
			if m.with == timeMask && strings.HasPrefix(x, "  ") { // a right-aligned column
				return fmt.Sprintf("%*s", max(len(x), len(timeMask)), timeMask)
			}
			if m.with == timeMask && strings.HasPrefix(x, " ") {
				return " " + timeMask
			}
			return m.with
		})
	}
	return s
}

const timeMask = "<t>"

// resize sends a new terminal size and checks the screen fills it
// exactly.
func (d *driver) resize(w, h int) {
	d.t.Helper()
	_, cmd := d.m.Update(tea.WindowSizeMsg{Width: w, Height: h})
	d.run(cmd)
	d.settle()
	lines := strings.Split(d.m.View(), "\n")
	if len(lines) != h {
		d.t.Errorf("at %d×%d: %d lines", w, h, len(lines))
	}
	for i, l := range lines {
		if lw := lipgloss.Width(l); lw > w {
			d.t.Errorf("at %d×%d: line %d is %d cells wide: %q", w, h, i+1, lw, l)
		}
	}
}

// golden compares the screen, masked, with testdata/<name>.golden and
// checks that it fits 80×24.
func (d *driver) golden(name string) {
	d.t.Helper()
	view := d.m.View()
	lines := strings.Split(view, "\n")
	if len(lines) != height {
		d.t.Errorf("%s: %d lines, want %d", name, len(lines), height)
	}
	for i, l := range lines {
		if w := lipgloss.Width(l); w > width {
			d.t.Errorf("%s: line %d is %d cells wide: %q", name, i+1, w, l)
		}
	}
	lines = strings.Split(Mask(view), "\n")
	for i, l := range lines { // a text field pads to its width, whatever the masked path's length
		lines[i] = strings.TrimRight(l, " ")
	}
	got := strings.Join(lines, "\n") + "\n"
	path := filepath.Join("testdata", name+".golden")
	if updating() {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			d.t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		d.t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		d.t.Errorf("%s (-want +got):\n%s", name, diff)
	}
	// Every screen resizes cleanly: it fills each size exactly and is the
	// same again back at 80×24.
	before := Mask(view)
	d.resize(120, 40)
	d.resize(64, 20)
	d.resize(width, height)
	if diff := cmp.Diff(before, Mask(d.m.View())); diff != "" {
		d.t.Errorf("%s after resizing to 120×40, 64×20 and back (-before +after):\n%s", name, diff)
	}
}
