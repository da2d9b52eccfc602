package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
)

func newRepoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "repo",
		Short: "Manage Helm chart repository aliases for INSTALL helm/<alias>/<chart>",
		Long: `Repo keeps aliases of classic Helm chart repositories (an index.yaml at a URL)
in $K2_HOME/repositories.json, so a K8sfile can say

  INSTALL helm/<alias>/<chart> version=1.2.3

Charts in OCI registries need no alias: INSTALL oci://host/path/chart.`,
		Args: exactArgs(0),
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add ALIAS URL",
		Short: "Add (or replace) a chart repository alias",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := artifact.LoadRepos(artifact.ReposFile(g.home))
			if err != nil {
				return err
			}
			if err := r.Add(args[0], args[1]); err != nil {
				return err
			}
			return r.Save()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List chart repository aliases",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			r, err := artifact.LoadRepos(artifact.ReposFile(g.home))
			if err != nil {
				return err
			}
			repos := r.Repos
			if repos == nil {
				repos = []artifact.Repo{}
			}
			return output.Render(g.stdout, f, repos, func(w io.Writer) error {
				tw := output.Table(w)
				fmt.Fprintln(tw, "ALIAS\tURL")
				for _, e := range repos {
					fmt.Fprintf(tw, "%s\t%s\n", e.Name, e.URL)
				}
				return tw.Flush()
			})
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "remove ALIAS",
		Aliases: []string{"rm"},
		Short:   "Remove a chart repository alias",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := artifact.LoadRepos(artifact.ReposFile(g.home))
			if err != nil {
				return err
			}
			if err := r.Remove(args[0]); err != nil {
				return err
			}
			return r.Save()
		},
	})
	return cmd
}
