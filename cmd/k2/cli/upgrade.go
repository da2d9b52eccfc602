package cli

import (
	"github.com/spf13/cobra"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	var d deployFlags
	cmd := &cobra.Command{
		Use:   "upgrade <env> <ref>",
		Short: "Apply a new artifact to a running environment",
		Long: `Apply a new artifact to an environment that is already deployed: layers
whose digest did not change are skipped, changed ones are applied again
(server-side apply prunes objects a layer no longer has; charts are
upgraded), and layers the new artifact no longer has are removed.
Machines that exist are kept; new pools are created.`,
		Example: `  k2 upgrade prod registry.example/shop:v2`,
		Args:    exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			d.env = args[0]
			res, err := runDeploy(cmd.Context(), g, &d, args[1], state.OpUpgrade, engine.ResumeAuto)
			return renderDeploy(g, f, res, err)
		},
	}
	d.register(cmd)
	cmd.Flags().Lookup("env").Hidden = true
	d.registerWait(cmd)
	return cmd
}

func newResumeCmd(g *globals) *cobra.Command {
	var d deployFlags
	cmd := &cobra.Command{
		Use:   "resume <env>",
		Short: "Continue an environment's interrupted or failed deployment",
		Long: `Continue the environment's latest deployment from its journal: steps done
are skipped, machines already made are reused (providers are idempotent by
request id). Fails when there is nothing to resume.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			d.env = args[0]
			s, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			last, err := s.LatestDeployment(cmd.Context(), d.env)
			s.Close()
			if err != nil {
				return engine.UserError(err)
			}
			// The values the interrupted run resolved, so a deploy
			// started with --set resumes with the same values.
			d.setValues(last.Values)
			d.source = last.Source
			if last.Op == state.OpMigrate {
				// The backup the interrupted move restores from.
				if d.restore, err = latestBackup(g.home, last.Source); err != nil {
					return err
				}
			}
			res, err := runDeploy(cmd.Context(), g, &d, last.ArtifactRef, last.Op, engine.ResumeRequired)
			return renderDeploy(g, f, res, err)
		},
	}
	d.remote.register(cmd)
	d.registerWait(cmd)
	return cmd
}
