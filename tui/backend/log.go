package backend

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// Masked replaces secret values wherever they would be shown.
const Masked = "••••••"

// LogBuffer keeps the last log lines for the log pane. Values registered
// with Redact never appear in it: a plugin that logs its configuration
// shows the mask instead.
type LogBuffer struct {
	mu      sync.Mutex
	lines   []string
	max     int
	seq     int // lines ever added
	secrets []string
}

// NewLogBuffer keeps the last max lines.
func NewLogBuffer(max int) *LogBuffer { return &LogBuffer{max: max} }

// Redact masks s in every line added from now on.
func (l *LogBuffer) Redact(s string) {
	if s == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secrets = append(l.secrets, s)
}

// Add appends a line (or several, split at newlines).
func (l *LogBuffer) Add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.secrets {
		line = strings.ReplaceAll(line, s, Masked)
	}
	for _, ln := range strings.Split(strings.TrimRight(line, "\n"), "\n") {
		l.lines = append(l.lines, ln)
		l.seq++
	}
	if over := len(l.lines) - l.max; over > 0 {
		l.lines = append(l.lines[:0:0], l.lines[over:]...)
	}
}

// Lines returns the kept lines and the number of lines ever added, so a
// reader can tell whether anything is new.
func (l *LogBuffer) Lines() ([]string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...), l.seq
}

// Handler returns a slog handler that adds one line per record at level
// or above: "15:04:05 INFO message key=value".
func (l *LogBuffer) Handler(level slog.Leveler) slog.Handler {
	return &lineHandler{buf: l, level: level}
}

type lineHandler struct {
	buf    *LogBuffer
	level  slog.Leveler
	prefix string // group prefix for attribute keys
	attrs  string // preformatted attributes of With
}

func (h *lineHandler) Enabled(_ context.Context, lv slog.Level) bool {
	return lv >= h.level.Level()
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %-5s %s", r.Time.Format("15:04:05"), r.Level.String(), r.Message)
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.prefix, a)
		return true
	})
	h.buf.Add(b.String())
	return nil
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	for _, a := range as {
		writeAttr(&b, h.prefix, a)
	}
	n := *h
	n.attrs += b.String()
	return &n
}

func (h *lineHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	n := *h
	n.prefix += name + "."
	return &n
}

func writeAttr(b *strings.Builder, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			writeAttr(b, prefix+a.Key+".", g)
		}
		return
	}
	v := a.Value.String()
	if strings.ContainsAny(v, " \t\"=") {
		v = fmt.Sprintf("%q", v)
	}
	fmt.Fprintf(b, " %s%s=%s", prefix, a.Key, v)
}
