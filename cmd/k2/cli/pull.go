package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
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
			f, err := g.format()
			if err != nil {
				return err
			}
			store, err := g.openStore(cmd.Context())
			if err != nil {
				return err
			}
			d, err := artifact.Pull(cmd.Context(), store, args[0], rf.options(g))
			if err != nil {
				return err
			}
			ref, _ := artifact.NormalizeRef(args[0])
			out := struct {
				Ref    string `json:"ref"`
				Digest string `json:"digest"`
			}{ref, d.Digest.String()}
			return output.Render(g.stdout, f, out, func(w io.Writer) error {
				if strings.Contains(ref, "@") {
					_, err := fmt.Fprintln(w, ref)
					return err
				}
				_, err := fmt.Fprintf(w, "%s@%s\n", ref, out.Digest)
				return err
			})
		},
	}
	rf.register(cmd)
	return cmd
}
