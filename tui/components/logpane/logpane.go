// Package logpane shows the last lines of the installer's log (plugins,
// builds, the deploy) under a rule; the deploy page toggles it with `l`.
package logpane

import (
	"strings"

	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/backend"
	"k2.dev/k2/tui/common"
)

// View renders the last height-1 lines of buf, one rule line first.
func View(c *common.Common, buf *backend.LogBuffer, width, height int) string {
	if height < 2 {
		return ""
	}
	lines, _ := buf.Lines()
	title := " log (l to hide) "
	rule := c.Styles.Rule.Render("──" + title + strings.Repeat("─", max(0, width-2-len(title))))
	n := height - 1
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	out := []string{rule}
	for _, l := range lines {
		out = append(out, c.Styles.Muted.Render(ansi.Truncate(strings.ReplaceAll(l, "\t", " "), width, "…")))
	}
	for len(out) < height {
		out = append(out, "")
	}
	return strings.Join(out, "\n")
}
