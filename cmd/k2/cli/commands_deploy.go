package cli

import "github.com/spf13/cobra"

// deployCommands returns the top-level commands of the deploy area.
func deployCommands(g *globals) []*cobra.Command {
	return nil
}
