package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/lint"
)

func newLintCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "lint DIR|FILE|REF [...]",
		Short: "Report objects that use alpha, beta, deprecated or removed Kubernetes APIs",
		Long: `Lint reads manifests (.yaml, .yml, .json), Helm charts (directories with a
Chart.yaml, or .tgz archives, rendered with their default values) and k2
artifacts (a REF in the local store or a registry), and reports every object
whose apiVersion is alpha, beta, deprecated or removed, with the stable
replacement where one exists. It never talks to a cluster.

Objects without apiVersion are fine: k2 resolves them to the server's stable
version when it applies them.

Exit codes: 0 nothing found, 3 problems found, 1 lint itself failed.`,
		Example: `  k2 lint manifests/
  k2 lint charts/argocd -o json
  k2 lint localhost:5000/shop:v3`,
		Args: rangeArgs(1, 64),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			total := &lint.Report{Findings: []lint.Finding{}}
			for _, arg := range args {
				var r *lint.Report
				if _, statErr := os.Stat(arg); statErr == nil {
					r, err = lint.Paths(ctx, []string{arg})
				} else {
					r, err = lintRef(cmd, g, &rf, arg)
				}
				if err != nil {
					return err
				}
				total.Objects += r.Objects
				total.Findings = append(total.Findings, r.Findings...)
			}
			if err := output.Render(g.stdout, f, total, func(w io.Writer) error { return printLint(w, total) }); err != nil {
				return err
			}
			if n := len(total.Findings); n > 0 {
				return usererr.New(usererr.KindInvalid, "%d of %d object(s) use an alpha, beta, deprecated or removed API", n, total.Objects)
			}
			return nil
		},
	}
	rf.register(cmd)
	return cmd
}

func lintRef(cmd *cobra.Command, g *globals, rf *remoteFlags, ref string) (*lint.Report, error) {
	ctx := cmd.Context()
	if _, err := artifact.NormalizeRef(ref); err != nil {
		return nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("%s is neither a file, a directory nor an artifact reference: %w", ref, err), "")
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, err
	}
	a, err := artifact.Open(ctx, store, ref, hasHost(ref), rf.options(g))
	if err != nil {
		return nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("%s is not a file or directory, and opening it as an artifact: %w", ref, err), "see k2 images")
	}
	return lint.Artifact(ctx, a)
}

func printLint(w io.Writer, r *lint.Report) error {
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintf(w, "%d object(s) checked: every API is stable\n", r.Objects)
		return err
	}
	t := output.Table(w)
	fmt.Fprintln(t, "SOURCE\tOBJECT\tAPIVERSION\tPROBLEM\tUSE INSTEAD")
	for _, x := range r.Findings {
		obj := "-"
		if x.Kind != "" {
			obj = x.Kind + "/" + x.Name
		}
		use := x.Replacement
		if use == "" {
			use = "-"
		}
		prob := x.Problem
		if x.RemovedIn != "" {
			prob += " in " + x.RemovedIn
		}
		if x.Problem == lint.ProblemInvalid {
			prob += ": " + x.Message
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", x.Source, obj, lintOrDash(x.APIVersion), prob, use)
	}
	return t.Flush()
}

func lintOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
