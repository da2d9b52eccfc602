package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/promote"
	"k2.dev/k2/state"
)

func newPromoteCmd(g *globals) *cobra.Command {
	var d deployFlags
	var from, to string
	cmd := &cobra.Command{
		Use:   "promote --from <env> --to <env>",
		Short: "Deploy the exact digest one environment runs to the next",
		Long: `Promote deploys to --to the exact artifact digest --from runs now (its last
successful deployment; never a tag resolved again), with --to's own values.

When --to has a registry ('k2 env create/set --registry') other than where the
artifact is, the artifact is first copied there with everything referring to
it, signatures included (oras-go's extended copy), so an air-gapped
environment receives all it needs from its own registry.

First every gate of --to is checked ('k2 env set <env> --gate …'): the source
healthy (every node and App Ready) for long enough, a valid signature by one
of the trusted keys, a manual approval ('k2 approve'). A refused promotion
names each failing gate and why, and changes nothing: no copy, no deploy, no
history entry.

--dry-run prints the plan: the digest, where it is copied, every gate's
verdict and the target's deploy plan; it exits 1 if a gate would refuse.
The promotion is recorded in the target's 'k2 history' (op promote, FROM the
source environment).`,
		Example: `  k2 promote --from dev --to staging
  k2 promote --from staging --to prod --dry-run -o json
  k2 approve prod sha256:… && k2 promote --from staging --to prod`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			if from == "" || to == "" {
				return usererr.Usage("--from and --to are required, e.g. k2 promote --from staging --to prod")
			}
			ctx := cmd.Context()
			p, err := planPromotion(ctx, g, &d, from, to)
			if err != nil {
				return err
			}
			if d.dryRun {
				d.env = to
				if p.Deploy, err = planDeploy(ctx, g, &d, p.SourceRef); err != nil {
					return err
				}
				p.Deploy.Artifact.Ref = p.TargetRef
				if err := output.Render(g.stdout, f, p, func(w io.Writer) error { return writePromotion(w, p) }); err != nil {
					return err
				}
				return p.Err()
			}
			if err := p.Err(); err != nil {
				return err
			}
			if p.Copy {
				g.logger().Info("copying the artifact with its signatures", "from", p.SourceRef, "to", p.TargetRef)
				store, err := g.openStore(ctx)
				if err != nil {
					return err
				}
				if _, err := artifact.Copy(ctx, store, p.SourceRef, p.TargetRef, d.remote.options(g)); err != nil {
					return err
				}
			}
			d.env, d.source = to, from
			res, err := runDeploy(ctx, g, &d, p.TargetRef, state.OpPromote, engine.ResumeAuto)
			return renderDeploy(g, f, res, err)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "environment whose artifact is promoted")
	fl.StringVar(&to, "to", "", "environment to deploy it to (must exist)")
	fl.BoolVar(&d.dryRun, "dry-run", false, "print the plan and every gate's verdict; change nothing")
	d.registerWait(cmd)
	d.remote.register(cmd)
	return cmd
}

// planPromotion checks the gates and works out the promotion.
func planPromotion(ctx context.Context, g *globals, d *deployFlags, from, to string) (*promote.Plan, error) {
	s, err := g.openState(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, err
	}
	gates := &promote.Gates{State: s, Artifacts: store, Remote: d.remote.options(g), Home: g.home}
	return gates.Plan(ctx, from, to)
}

func writePromotion(w io.Writer, p *promote.Plan) error {
	verdict := "would promote"
	if p.Refused {
		verdict = "would be REFUSED"
	}
	fmt.Fprintf(w, "Promotion %s → %s %s\n", p.From, p.To, verdict)
	fmt.Fprintf(w, "Digest:     %s (deployment %s of %s)\n", p.Digest, p.SourceDeployment, p.From)
	fmt.Fprintf(w, "From:       %s\n", p.SourceRef)
	if p.Copy {
		fmt.Fprintf(w, "Copy to:    %s (with its signatures)\n", p.TargetRef)
	} else {
		fmt.Fprintf(w, "Deploy:     %s (no copy)\n", p.TargetRef)
	}
	fmt.Fprintln(w, "Gates:")
	if len(p.Gates) == 0 {
		fmt.Fprintf(w, "  (none: %s has no gates)\n", p.To)
	}
	for _, r := range p.Gates {
		mark := "pass"
		if !r.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %s: %s\n", mark, r.Gate, r.Reason)
	}
	fmt.Fprintln(w)
	if p.Deploy != nil {
		return p.Deploy.WriteText(w)
	}
	return nil
}
