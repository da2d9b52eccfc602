package cli

import "github.com/spf13/cobra"

// artifactCommands returns the top-level commands of the artifact area.
func artifactCommands(g *globals) []*cobra.Command {
	return nil
}
