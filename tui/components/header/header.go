// Package header renders the installer's first line: the wizard's steps
// with the current one marked.
package header

import (
	"strings"

	"github.com/charmbracelet/x/ansi"

	"k2.dev/k2/tui/common"
)

// View renders the header for step now at width.
func View(c *common.Common, now common.Step, width int) string {
	parts := make([]string, len(common.StepNames))
	for i, name := range common.StepNames {
		switch {
		case common.Step(i) < now:
			parts[i] = c.Styles.StepDone.Render(name)
		case common.Step(i) == now:
			parts[i] = c.Styles.StepNow.Render("[" + name + "]")
		default:
			parts[i] = c.Styles.StepLater.Render(name)
		}
	}
	line := c.Styles.Title.Render("k2 install") + "  " + strings.Join(parts, c.Styles.Muted.Render(" › "))
	return ansi.Truncate(line, width, "…")
}
