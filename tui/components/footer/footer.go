// Package footer renders the key help at the bottom of the screen, short
// or (after `?`) in full.
package footer

import (
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"

	"k2.dev/k2/tui/common"
)

// Short renders bindings on one line of width.
func Short(c *common.Common, bindings []key.Binding, width int) string {
	h := model(c, width)
	return h.ShortHelpView(bindings)
}

// Full renders groups of bindings in columns.
func Full(c *common.Common, groups [][]key.Binding, width int) string {
	h := model(c, width)
	return h.FullHelpView(groups)
}

func model(c *common.Common, width int) help.Model {
	h := help.New()
	h.Width = width
	h.ShortSeparator = " · "
	h.Styles.ShortKey = c.Styles.Heading
	h.Styles.ShortDesc = c.Styles.Help
	h.Styles.ShortSeparator = c.Styles.Help
	h.Styles.FullKey = c.Styles.Heading
	h.Styles.FullDesc = c.Styles.Help
	h.Styles.FullSeparator = c.Styles.Help
	h.Styles.Ellipsis = c.Styles.Help
	return h
}
