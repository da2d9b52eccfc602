package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
)

func newImagesCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List the artifacts in the local store",
		Long: `Images lists the artifacts in the local store ($K2_HOME/store) with their
digest, layer count and total size.

  k2 images rm REF      removes one (blobs no other artifact uses are deleted)`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := func(ctx context.Context, store *artifact.Store) ([]artifact.Image, error) {
				imgs, err := store.List(ctx)
				if imgs == nil && err == nil {
					imgs = []artifact.Image{}
				}
				return imgs, err
			}
			return report(cmd.Context(), g, g.artifactStore, list, func(w io.Writer, imgs []artifact.Image) error {
				tw := output.Table(w)
				fmt.Fprintln(tw, "REF\tDIGEST\tLAYERS\tSIZE")
				for _, i := range imgs {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", i.Ref, shortDigest(i.Digest), i.Layers, output.Bytes(i.Size))
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "rm REF...",
		Short: "Remove artifacts from the local store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			for _, r := range args {
				if err := store.Remove(cmd.Context(), r); err != nil {
					return err
				}
			}
			return nil
		},
	})
	return cmd
}

// shortDigest returns the first 12 hex digits of a sha256 digest.
func shortDigest(d string) string {
	const p = "sha256:"
	if len(d) > len(p)+12 {
		return d[len(p) : len(p)+12]
	}
	return d
}
