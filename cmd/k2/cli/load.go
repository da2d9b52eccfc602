package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
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
			load := func(ctx context.Context, store *artifact.Store) ([]pinnedRef, error) {
				refs, err := artifact.Load(ctx, store, args[0])
				if err != nil {
					return nil, err
				}
				var out []pinnedRef
				for _, r := range refs {
					d, err := store.Resolve(ctx, r)
					if err != nil {
						return nil, err
					}
					out = append(out, pinnedRef{r, d.Digest.String()})
				}
				return out, nil
			}
			return report(cmd.Context(), g, g.artifactStore, load, func(w io.Writer, out []pinnedRef) error {
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
