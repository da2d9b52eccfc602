package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func newRollbackCmd(g *globals) *cobra.Command {
	var d deployFlags
	var to string
	cmd := &cobra.Command{
		Use:   "rollback <env> [--to <digest>]",
		Short: "Re-deploy an environment's earlier artifact with the values it had",
		Long: `Re-deploy an earlier deployment of the environment: the exact digest it ran
(never a tag resolved again) with exactly the ARG values it resolved then,
whatever the environment's values are now. Layers that did not change are
skipped, as in an upgrade. The rollback is recorded in 'k2 history' naming
the deployment it restored.

Without --to it restores the newest successful deployment before the current
one whose digest or values differ; --to picks the newest successful
deployment of a digest (sha256:… or at least 7 of its hex digits). Only
deployments since the environment was created or last destroyed count.

If the environment requires signatures ('k2 env set ENV --gate signed-by=…'),
the digest must still carry a valid one.`,
		Example: `  k2 rollback staging
  k2 rollback prod --to sha256:4f1c2a…
  k2 rollback prod --dry-run -o json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := g.openState(ctx)
			if err != nil {
				return err
			}
			target, cur, err := engine.RollbackTarget(ctx, s, args[0], to)
			s.Close()
			if err != nil {
				return err
			}
			d.env, d.source = args[0], target.ID
			d.setValues(target.Values)
			ref := artifact.PinnedRef(target.ArtifactRef, target.ArtifactDigest)
			if d.dryRun {
				p, err := planDeploy(ctx, g, &d, ref)
				if err != nil {
					return err
				}
				out := rollbackPlan{From: cur, To: target, Plan: p}
				return output.Render(g.stdout, f, out, func(w io.Writer) error {
					fmt.Fprintf(w, "would roll back %s from %s (values %s, deployment %s)\n  to %s (values %s, deployment %s of %s)\n\n",
						d.env, cur.ArtifactDigest, engine.ShortDigest(cur.ValuesHash), cur.ID,
						target.ArtifactDigest, engine.ShortDigest(target.ValuesHash), target.ID, target.StartedAt.Format("2006-01-02 15:04:05Z07:00"))
					return p.WriteText(w)
				})
			}
			res, err := runDeploy(ctx, g, &d, ref, state.OpRollback, engine.ResumeAuto)
			return renderDeploy(g, f, res, err)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "digest to roll back to (default: the one before the current deployment)")
	cmd.Flags().BoolVar(&d.dryRun, "dry-run", false, "print what would be restored and the plan; change nothing")
	d.registerWait(cmd)
	d.remote.register(cmd)
	return cmd
}

// rollbackPlan is what 'k2 rollback --dry-run' reports.
type rollbackPlan struct {
	From *state.Deployment `json:"from"`
	To   *state.Deployment `json:"to"`
	Plan *engine.Plan      `json:"plan"`
}
