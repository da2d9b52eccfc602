package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
)

func newPushCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "push REF",
		Short: "Push an artifact from the local store to its registry",
		Long: `Push copies REF from the local store to the registry it names and prints the
digest-pinned reference (host/repo@sha256:…) on stdout: deploy that, and every
environment gets exactly the same cluster.

Registries on localhost and 127.0.0.1 are reached over plain HTTP; others over
HTTPS with the credentials of docker's config.json (docker login).

Example:
  k2 push localhost:5000/hello:v1`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			push := func(ctx context.Context, store *artifact.Store) (pushed, error) {
				pinned, d, err := artifact.Push(ctx, store, args[0], rf.options(g))
				if err != nil {
					return pushed{}, err
				}
				return pushed{args[0], pinned, d.Digest.String()}, nil
			}
			return report(cmd.Context(), g, g.artifactStore, push, func(w io.Writer, p pushed) error {
				_, err := fmt.Fprintln(w, p.Pinned)
				return err
			})
		},
	}
	rf.register(cmd)
	return cmd
}

// pushed is what k2 push reports.
type pushed struct {
	Ref    string `json:"ref"`
	Pinned string `json:"pinned"`
	Digest string `json:"digest"`
}
