package cli

import (
	"context"

	"github.com/spf13/cobra"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// deployCommands returns the top-level commands of the deploy area.
func deployCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newDeployCmd(g),
		newInstallCmd(g),
		newUpgradeCmd(g),
		newResumeCmd(g),
		newStatusCmd(g),
		newDestroyCmd(g),
		newEnvCmd(g),
		newHistoryCmd(g),
		newRollbackCmd(g),
		newPromoteCmd(g),
		newApproveCmd(g),
		newDiffCmd(g),
		newMigrateCmd(g),
		newMachineCmd(g),
	}
}

// openState opens the state database in g.home. Callers Close it.
func (g *globals) openState(ctx context.Context) (*state.Store, error) {
	s, err := state.Open(ctx, g.home, state.WithLogger(g.logger()))
	return s, engine.UserError(err)
}
