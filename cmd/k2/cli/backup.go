package cli

import "github.com/spf13/cobra"

func newBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "backup", Hidden: true}
}
