package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/promote"
)

func newEnvDiffCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "diff <env-a> <env-b>",
		Short: "Show side by side how two environments differ",
		Long: `Compare two environments side by side: provider, registry, the artifact
digest each runs now (its last successful deployment), the hash of its
resolved ARG values and each value, machines per pool, the Kubernetes
version, and the digest of every layer. Rows that differ are marked with *.
It reads k2's records and the artifacts (from the local store, pulled by
digest if missing), not the clusters: 'k2 diff ENV' compares a cluster with
its artifact. It exits 0 whether or not they differ; -o json has "same".`,
		Example: `  k2 env diff staging prod
  k2 env diff staging prod -o json | jq '.rows[] | select(.same | not)'`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, err := g.openState(ctx)
			if err != nil {
				return err
			}
			defer s.Close()
			d, err := promote.DiffEnvs(ctx, s, g.artifactOpener(rf), args[0], args[1])
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, d, func(w io.Writer) error { return writeEnvDiff(w, d) })
		},
	}
	rf.register(cmd)
	return cmd
}

// artifactOpener opens artifacts from the local store, pulling by
// reference when the store lacks them.
func (g *globals) artifactOpener(rf remoteFlags) func(ctx context.Context, ref string) (*artifact.Artifact, error) {
	return func(ctx context.Context, ref string) (*artifact.Artifact, error) {
		store, err := g.openStore(ctx)
		if err != nil {
			return nil, err
		}
		return artifact.Open(ctx, store, ref, hasHost(ref), rf.options(g))
	}
}

func writeEnvDiff(w io.Writer, d *promote.EnvDiff) error {
	t := output.Table(w)
	fmt.Fprintf(t, " \tFIELD\t%s\t%s\n", strings.ToUpper(d.A.Env), strings.ToUpper(d.B.Env))
	for _, r := range d.Rows {
		mark := " "
		if !r.Same {
			mark = "*"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", mark, r.Field, cell(r.Field, r.A), cell(r.Field, r.B))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	for _, s := range []promote.EnvSide{d.A, d.B} {
		for _, warn := range s.Warnings {
			fmt.Fprintf(w, "%s: %s\n", s.Env, warn)
		}
	}
	if d.Same {
		_, err := fmt.Fprintf(w, "%s and %s are the same\n", d.A.Env, d.B.Env)
		return err
	}
	return nil
}

// cell shortens digests for the table; JSON has them whole.
func cell(field, v string) string {
	if v == "" {
		return "-"
	}
	if strings.HasPrefix(v, "sha256:") {
		return engine.ShortDigest(v)
	}
	return v
}
