package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/controlplane"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the join tokens agents use to join this server",
	}
	cmd.AddCommand(newTokenCreateCmd(g), newTokenLsCmd(g))
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var (
		dataDir, desc string
		ttl           time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token (printed once; only its hash is stored)",
		Example: `  TOKEN=$(k2 token create --data-dir /tmp/k2 --ttl 1h)
  k2 agent --server https://10.0.0.1:6443 --token "$TOKEN"`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			tok, rec, err := controlplane.CreateToken(dataDir, ttl, desc)
			if err != nil {
				return usererr.Wrap(usererr.KindFailure, err, "")
			}
			out := struct {
				Token   string    `json:"token"`
				ID      string    `json:"id"`
				Expires time.Time `json:"expires,omitzero"`
			}{tok.String(), rec.ID, rec.Expires}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				_, err := fmt.Fprintln(w, tok.String())
				return err
			})
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0: forever)")
	cmd.Flags().StringVar(&desc, "description", "", "what the token is for")
	return cmd
}

func newTokenLsCmd(g *globals) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List join tokens (ids and expiry, never secrets)",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			recs, err := controlplane.NewTokenStore(dataDir).List()
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, recs, func(w io.Writer) error {
				t := output.Table(w)
				fmt.Fprintln(t, "ID\tCREATED\tEXPIRES\tDESCRIPTION")
				for _, r := range recs {
					exp := "never"
					if !r.Expires.IsZero() {
						exp = r.Expires.Format(time.RFC3339)
					}
					fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", r.ID, r.Created.Format(time.RFC3339), exp, r.Description)
				}
				return t.Flush()
			})
		},
	}
	addDataDirFlag(cmd, &dataDir)
	return cmd
}
