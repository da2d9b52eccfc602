package settings

import (
	"github.com/charmbracelet/huh"
	"github.com/charmbracelet/lipgloss"

	"k2.dev/k2/tui/common"
)

// theme is huh's base theme in the installer's styles: compact (no blank
// line between fields) and readable without colour.
func theme(c *common.Common) *huh.Theme {
	s := c.Styles
	t := huh.ThemeBase()
	t.FieldSeparator = lipgloss.NewStyle().SetString("\n")
	t.Group.Title = s.Heading.MarginBottom(0)
	t.Group.Description = s.Muted.MarginBottom(1)
	t.Focused.Title = s.Selected
	t.Focused.Description = s.Muted
	t.Focused.ErrorIndicator = s.Error.SetString(" ✗")
	t.Focused.ErrorMessage = s.Error
	t.Focused.TextInput.Prompt = s.Selected
	t.Focused.TextInput.Placeholder = s.Muted
	t.Focused.Base = t.Focused.Base.BorderForeground(s.Selected.GetForeground())
	t.Blurred = t.Focused
	t.Blurred.Base = t.Blurred.Base.BorderStyle(lipgloss.HiddenBorder())
	t.Blurred.Title = s.Heading
	t.Blurred.TextInput.Prompt = s.Muted
	return t
}
