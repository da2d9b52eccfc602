package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
)

func newLoadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "load FILE.tar",
		Short: "Load artifacts from an OCI image-layout tarball into the local store",
		Long: `Load copies every tagged artifact of a tarball written by k2 save (or any OCI
image-layout tarball) into the local store and prints their references.

Example:
  k2 load hello.tar`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			refs, err := artifact.Load(cmd.Context(), store, args[0])
			if err != nil {
				return err
			}
			type loaded struct {
				Ref    string `json:"ref"`
				Digest string `json:"digest"`
			}
			var out []loaded
			for _, r := range refs {
				d, err := store.Resolve(cmd.Context(), r)
				if err != nil {
					return err
				}
				out = append(out, loaded{r, d.Digest.String()})
			}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				for _, l := range out {
					if _, err := fmt.Fprintf(w, "%s@%s\n", l.Ref, l.Digest); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
}
