package cli

import "github.com/spf13/cobra"

// pluginCommands returns the top-level commands of the plugin area.
func pluginCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{newPluginCmd(g), newAgentCmd(g), newContainerdCmd(g), newSuperviseCmd(g), newAWSCmd(g), newMetalCmd(g)}
}
