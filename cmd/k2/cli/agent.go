package cli

import "github.com/spf13/cobra"

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "agent", Short: "Join this machine to a k2 cluster and run its pods", Hidden: true}
}
