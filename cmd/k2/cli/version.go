package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/version"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print k2's version and the Kubernetes version it embeds",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			v := version.Get()
			return output.Render(g.stdout, f, v, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "k2 %s (commit %s, built %s)\nKubernetes %s\n%s\n",
					v.Version, orUnknown(v.Commit), orUnknown(v.BuildDate), v.Kubernetes, v.Go)
				return err
			})
		},
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
