package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history <env>",
		Short: "List an environment's deployments, newest first",
		Long: `List the deploys, upgrades, promotions, rollbacks and destroys of an
environment, newest first: the artifact digest each one deployed, the hash of
the ARG values it resolved (equal hashes, equal values), who ran it (user@host,
or $K2_ACTOR), when, and how it ended. FROM names the environment a promotion
came from or the deployment a rollback restored. -o json adds the artifact
reference and the values themselves.

A deployment still "running" with nobody holding the environment's lock was
interrupted; 'k2 deploy' again resumes it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			history := func(ctx context.Context, s *state.Store) ([]state.Deployment, error) {
				return engine.History(ctx, s, args[0], limit)
			}
			return report(cmd.Context(), g, g.stateDB, history, func(w io.Writer, h []state.Deployment) error {
				if len(h) == 0 {
					_, err := fmt.Fprintf(w, "no deployments of %s yet\n", args[0])
					return err
				}
				t := output.Table(w)
				fmt.Fprintln(t, "ID\tOP\tDIGEST\tVALUES\tWHO\tSTARTED\tDURATION\tRESULT\tFROM\tERROR")
				for _, d := range h {
					dur := "-"
					if !d.FinishedAt.IsZero() {
						dur = d.FinishedAt.Sub(d.StartedAt).Round(time.Second).String()
					}
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Op,
						dash(engine.ShortDigest(d.ArtifactDigest)), dash(engine.ShortDigest(d.ValuesHash)), dash(d.Actor),
						d.StartedAt.Format(time.RFC3339), dur, d.Result, dash(d.Source), oneLine(d.Error))
				}
				return t.Flush()
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "show at most this many (0: all)")
	return cmd
}

// oneLine shortens an error for a table cell.
func oneLine(s string) string {
	for i, r := range s {
		if r == '\n' {
			s = s[:i] + " …"
			break
		}
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}
