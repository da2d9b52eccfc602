package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
)

func newPullCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an artifact from a registry into the local store",
		Long: `Pull copies REF (host/repo:tag or host/repo@sha256:…) from its registry into
the local store and prints the digest-pinned reference.

Example:
  k2 pull localhost:5000/hello:v1`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pull := func(ctx context.Context, store *artifact.Store) (pinnedRef, error) {
				d, err := artifact.Pull(ctx, store, args[0], rf.options(g))
				if err != nil {
					return pinnedRef{}, err
				}
				ref, _ := artifact.NormalizeRef(args[0])
				return pinnedRef{ref, d.Digest.String()}, nil
			}
			return report(cmd.Context(), g, g.artifactStore, pull, func(w io.Writer, p pinnedRef) error {
				_, err := fmt.Fprintln(w, p.pinned())
				return err
			})
		},
	}
	rf.register(cmd)
	return cmd
}

// pinnedRef is an artifact in the local store: what pull and load report.
type pinnedRef struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// pinned is ref@digest (ref alone if it is pinned already).
func (p pinnedRef) pinned() string {
	if strings.Contains(p.Ref, "@") {
		return p.Ref
	}
	return p.Ref + "@" + p.Digest
}
