package cli

import "github.com/spf13/cobra"

// serverCommands returns the top-level commands of the server area.
func serverCommands(g *globals) []*cobra.Command {
	return nil
}
