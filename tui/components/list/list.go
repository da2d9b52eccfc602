// Package list is a cursor list of rows with an optional second line per
// row; disabled rows are shown (with why) but the cursor skips them.
package list

import (
	"strings"

	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/common"
)

// Item is one row.
type Item struct {
	// Title is the first column, Detail the rest of the line.
	Title, Detail string
	// Note is shown on a line of its own below the row (why it is
	// disabled, an error).
	Note     string
	Disabled bool
}

// Model is a list. The zero cursor is the first enabled item.
type Model struct {
	*common.Common
	Items   []Item
	Cursor  int
	Focused bool
	// TitleWidth is the width of the title column; 0 fits the longest.
	TitleWidth int
	offset     int
}

// New returns a list of items with the cursor on the first enabled one.
func New(c *common.Common, items []Item) *Model {
	m := &Model{Common: c, Items: items, Cursor: -1}
	m.Cursor = m.next(-1, 1)
	return m
}

// Selected returns the item under the cursor, false if none is enabled.
func (m *Model) Selected() (Item, bool) {
	if m.Cursor < 0 || m.Cursor >= len(m.Items) {
		return Item{}, false
	}
	return m.Items[m.Cursor], true
}

// Select moves the cursor to the first enabled item titled title.
func (m *Model) Select(title string) bool {
	for i, it := range m.Items {
		if it.Title == title && !it.Disabled {
			m.Cursor = i
			return true
		}
	}
	return false
}

// Up moves the cursor to the previous enabled item; false at the top.
func (m *Model) Up() bool { return m.move(-1) }

// Down moves the cursor to the next enabled item; false at the bottom.
func (m *Model) Down() bool { return m.move(1) }

func (m *Model) move(d int) bool {
	if n := m.next(m.Cursor, d); n >= 0 {
		m.Cursor = n
		return true
	}
	return false
}

func (m *Model) next(from, d int) int {
	for i := from + d; i >= 0 && i < len(m.Items); i += d {
		if !m.Items[i].Disabled {
			return i
		}
	}
	return -1
}

// View renders the list into width×height, scrolled to keep the cursor
// in sight.
func (m *Model) View(width, height int) string {
	tw := m.TitleWidth
	if tw == 0 {
		for _, it := range m.Items {
			tw = max(tw, ansi.StringWidth(it.Title))
		}
	}
	type line struct {
		text string
		item int
	}
	var lines []line
	for i, it := range m.Items {
		marker := "  "
		st := m.Styles.Muted
		title := m.Styles.Heading
		switch {
		case it.Disabled:
			marker, st, title = "✗ ", m.Styles.Disabled, m.Styles.Disabled
		case i == m.Cursor && m.Focused:
			marker, title = "› ", m.Styles.Selected
		case i == m.Cursor:
			marker = "· "
		}
		row := marker + title.Render(pad(it.Title, tw))
		if it.Detail != "" {
			row += "  " + st.Render(it.Detail)
		}
		lines = append(lines, line{ansi.Truncate(row, width, "…"), i})
		if it.Note != "" {
			ns := m.Styles.Muted
			if it.Disabled {
				ns = m.Styles.Warn
			}
			for _, nl := range wrap(it.Note, width-4) {
				lines = append(lines, line{"    " + ns.Render(nl), i})
			}
		}
	}
	if height <= 0 || len(lines) <= height {
		m.offset = 0
	} else {
		first, last := -1, -1
		for i, l := range lines {
			if l.item == m.Cursor {
				if first < 0 {
					first = i
				}
				last = i
			}
		}
		if first >= 0 {
			if first < m.offset {
				m.offset = first
			}
			if last >= m.offset+height {
				m.offset = last - height + 1
			}
		}
		m.offset = min(m.offset, len(lines)-height)
		lines = lines[m.offset : m.offset+height]
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.text
	}
	return strings.Join(out, "\n")
}

func pad(s string, w int) string {
	if n := ansi.StringWidth(s); n < w {
		return s + strings.Repeat(" ", w-n)
	}
	return s
}

// wrap breaks s into lines of at most width cells at spaces.
func wrap(s string, width int) []string {
	if width < 10 {
		width = 10
	}
	return strings.Split(ansi.Wordwrap(s, width, " "), "\n")
}
