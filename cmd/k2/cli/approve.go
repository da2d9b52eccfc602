package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func newApproveCmd(g *globals) *cobra.Command {
	var comment string
	cmd := &cobra.Command{
		Use:   "approve <env> <digest>",
		Short: "Approve an artifact digest for an environment (its approval gate)",
		Long: `Record that you approve an artifact digest for an environment whose approval
gate is on ('k2 env set <env> --gate approval'): a promotion, deploy or upgrade
of that exact digest to the environment may then proceed. The approval is kept
in $K2_HOME/state.db with who gave it (user@host, or $K2_ACTOR) and when;
'k2 env show <env>' lists them. DIGEST is sha256:… or a reference pinned to
one (host/repo@sha256:…), as 'k2 promote --dry-run' and 'k2 history' show it.`,
		Example: `  k2 promote --from staging --to prod --dry-run     # shows the digest and the gate
  k2 approve prod sha256:4f1c… --comment "CAB-1234"
  k2 promote --from staging --to prod`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			digest := args[1]
			if i := strings.LastIndex(digest, "@"); i >= 0 {
				digest = digest[i+1:]
			}
			s, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			a, err := s.Approve(cmd.Context(), state.Approval{Env: args[0], Digest: digest, Comment: comment})
			if err != nil {
				return engine.UserError(err)
			}
			return output.Render(g.stdout, f, a, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "approved %s for %s (by %s at %s)\n", a.Digest, a.Env, a.Actor, a.ApprovedAt.Format(time.RFC3339))
				return err
			})
		},
	}
	cmd.Flags().StringVar(&comment, "comment", "", "why, or a change ticket, kept with the approval")
	return cmd
}
