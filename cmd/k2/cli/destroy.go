package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
)

func newDestroyCmd(g *globals) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "destroy <env>",
		Short: "Delete every machine of an environment and forget its cluster",
		Long: `Ask the environment's provider to delete every machine k2 made for it, then
remove the cluster's identity (PKI, kubeconfig, join token) and record the
destroy in the history. The environment and its values stay, so a later
'k2 deploy --env <env>' builds it again. Asks for confirmation unless --yes.`,
		Example: `  k2 destroy default --yes
  k2 destroy prod`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			env := args[0]
			ctx := cmd.Context()
			s, err := g.openState(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			e, err := s.GetEnv(ctx, env)
			if err != nil {
				return engine.UserError(err)
			}
			ms, err := s.ListMachines(ctx, env)
			if err != nil {
				return err
			}
			if !yes {
				in, ok := g.stdin.(*os.File)
				if !ok || !term.IsTerminal(int(in.Fd())) {
					return usererr.Usage("destroying %s deletes %d machines; pass --yes to confirm when not on a terminal", env, len(ms))
				}
				fmt.Fprintf(g.stderr, "Destroy environment %s: delete %d machines from provider %s? [y/N] ", env, len(ms), e.Provider)
				line, _ := bufio.NewReader(in).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
					return usererr.New(usererr.KindFailure, "destroy of %s cancelled", env)
				}
			}
			if err := destroyEnv(ctx, g, s, e); err != nil {
				return err
			}
			out := struct {
				Env      string `json:"env"`
				Machines int    `json:"machinesDeleted"`
			}{env, len(ms)}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "destroyed %s: %d machines deleted\n", env, len(ms))
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
