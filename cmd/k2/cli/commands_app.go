package cli

import "github.com/spf13/cobra"

// appCommands returns the top-level commands of the app area.
func appCommands(g *globals) []*cobra.Command {
	return nil
}
