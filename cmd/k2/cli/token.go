package cli

import "github.com/spf13/cobra"

func newTokenCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "token", Hidden: true}
}
