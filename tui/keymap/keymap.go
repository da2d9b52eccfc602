// Package keymap holds the installer's key bindings, shown by `?`.
package keymap

import "github.com/charmbracelet/bubbles/key"

// KeyMap is every binding of the installer; pages show the ones they use.
type KeyMap struct {
	Up, Down       key.Binding
	PageUp, PageDn key.Binding
	Left, Right    key.Binding
	Next, Prev     key.Binding // tab / shift+tab between fields and sections
	Select         key.Binding // enter
	Back           key.Binding // esc
	Help           key.Binding
	Quit           key.Binding
	Interrupt      key.Binding // ctrl+c
	Logs           key.Binding
	Retry          key.Binding
	Rollback       key.Binding
}

// Default returns the default bindings.
func Default() *KeyMap {
	b := func(help, desc string, keys ...string) key.Binding {
		return key.NewBinding(key.WithKeys(keys...), key.WithHelp(help, desc))
	}
	return &KeyMap{
		Up:        b("↑/k", "up", "up", "k"),
		Down:      b("↓/j", "down", "down", "j"),
		PageUp:    b("pgup", "page up", "pgup", "ctrl+u"),
		PageDn:    b("pgdn", "page down", "pgdown", "ctrl+d", " "),
		Left:      b("←", "left", "left"),
		Right:     b("→", "right", "right"),
		Next:      b("tab", "next", "tab"),
		Prev:      b("shift+tab", "previous", "shift+tab"),
		Select:    b("enter", "select", "enter"),
		Back:      b("esc", "back", "esc"),
		Help:      b("?", "help", "?", "f1"),
		Quit:      b("q", "quit", "q"),
		Interrupt: b("ctrl+c", "stop", "ctrl+c"),
		Logs:      b("l", "logs", "l"),
		Retry:     b("r", "retry", "r"),
		Rollback:  b("b", "roll back", "b"),
	}
}
