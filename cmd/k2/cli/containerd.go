package cli

import (
	"github.com/spf13/cobra"

	"k2.dev/k2/provision/node"
)

// newContainerdCmd is the containerd daemon compiled into k2, which
// `k2 agent` runs as a child with the config it writes. Hidden: users run
// the agent, not this.
func newContainerdCmd(_ *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "containerd [containerd flags]",
		Short:              "Run the containerd daemon embedded in k2 (started by k2 agent)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return node.Daemon(cmd.Context(), args)
		},
	}
}
