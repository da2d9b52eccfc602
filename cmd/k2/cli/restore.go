package cli

import "github.com/spf13/cobra"

func newRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "restore", Hidden: true}
}
