package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
)

func newInspectCmd(g *globals) *cobra.Command {
	var (
		rf     remoteFlags
		remote bool
	)
	cmd := &cobra.Command{
		Use:   "inspect REF",
		Short: "Show what an artifact holds: params, machines, apps, charts, API kinds, base chain, sizes",
		Long: `Inspect reads an artifact's config and shows its parameters (ARGs), machine
pools, apps, charts, the API kinds of the objects it creates, its FROM chain
with pinned digests, and its layers with sizes.

REF is looked up in the local store; with --remote (or when it is not there
and names a registry) it is read from the registry without storing it.

Examples:
  k2 inspect hello:v1
  k2 inspect -o json localhost:5000/hello:v1`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var a *artifact.Artifact
			if !remote {
				store, err := g.openStore(ctx)
				if err != nil {
					return err
				}
				a, err = artifact.Open(ctx, store, args[0], false, rf.options(g))
				if errors.Is(err, artifact.ErrNotFound) {
					if !strings.Contains(args[0], "/") || !hasHost(args[0]) {
						return usererr.Wrap(usererr.KindUsage, err, "see k2 images, or build it with k2 build -t "+args[0])
					}
					remote = true
				} else if err != nil {
					return err
				}
			}
			if remote {
				if a, err = artifact.OpenRemote(ctx, args[0], rf.options(g)); err != nil {
					return err
				}
			}
			s := a.Summarize()
			return output.Render(g.stdout, f, s, func(w io.Writer) error { return printSummary(w, s) })
		},
	}
	cmd.Flags().BoolVar(&remote, "remote", false, "read the artifact from its registry, not the local store")
	rf.register(cmd)
	return cmd
}

// hasHost reports whether the first component of ref looks like a registry host.
func hasHost(ref string) bool {
	h, _, _ := strings.Cut(ref, "/")
	return strings.ContainsAny(h, ".:") || h == "localhost"
}

func printSummary(w io.Writer, s artifact.Summary) error {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("Ref:         %s\n", s.Ref)
	p("Digest:      %s\n", s.Digest)
	p("Kubernetes:  %s\n", orNone(s.Kubernetes))
	if s.OS.Version != "" {
		p("OS:          %s %s\n", s.OS.Name, s.OS.Version)
	} else {
		p("OS:          %s\n", s.OS.Name)
	}
	p("Size:        %s (%d layers)\n", output.Bytes(s.Size), len(s.Layers))
	if s.AllowBeta {
		p("Allow beta:  yes (alpha/beta API versions were allowed at build)\n")
	}
	p("Base:")
	if len(s.Base) == 0 {
		p("        scratch\n")
	} else {
		p("\n")
		for _, b := range s.Base {
			p("  %s@%s\n", b.Ref, b.Digest)
		}
	}
	if len(s.Labels) > 0 {
		p("Labels:\n")
		var keys []string
		for k := range s.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p("  %s=%s\n", k, s.Labels[k])
		}
	}
	tw := output.Table(w)
	section := func(title string, header string) {
		tw.Flush()
		p("\n%s\n", title)
		fmt.Fprintln(tw, header)
	}
	section("Params:", "  NAME\tDEFAULT")
	for _, a := range s.Args {
		def := "(required at deploy)"
		if a.Default != nil {
			def = *a.Default
		}
		fmt.Fprintf(tw, "  %s\t%s\n", a.Name, def)
	}
	section("Machines:", "  POOL\tCOUNT\tCPU\tMEMORY\tDISK\tARCH")
	for _, m := range s.Machines {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", m.Pool, m.Count, dash(m.CPU), dash(m.Memory), dash(m.Disk), dash(m.Arch))
	}
	section("Apps:", "  NAME\tIMAGE\tPORTS\tREPLICAS")
	for _, a := range s.Apps {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", a.Name, a.Image, dash(strings.Join(a.Ports, ",")), dash(a.Replicas))
	}
	section("Charts:", "  LAYER\tCHART\tVERSION\tRELEASE\tNAMESPACE")
	for _, c := range s.Charts {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Layer, c.Chart, c.Version, c.Release, c.Namespace)
	}
	section("API kinds:", "  APIVERSION\tKIND\tOBJECTS")
	for _, k := range s.APIKinds {
		av := k.APIVersion
		if av == "" {
			av = "(resolved at deploy)"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", av, k.Kind, k.Count)
	}
	section("Layers:", "  NAME\tKIND\tSIZE\tOBJECTS\tDIGEST\tFROM")
	for _, l := range s.Layers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%s\t%s\n", l.Name, l.Kind, output.Bytes(l.Size), l.Objects, shortDigest(l.Digest), dash(l.From))
	}
	// Images (k2 build --vendor-images stores them; see docs/artifact.md).
	section("Images:", "  IMAGE\tVENDORED\tSIZE\tDIGEST\tUSED BY")
	for _, im := range s.Images {
		vendored, size := "no", "-"
		if im.Vendored {
			vendored, size = "yes", output.Bytes(im.Size)
		}
		used := strings.Join(im.Sources, "; ")
		if im.From != "" {
			used += " (from " + im.From + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", im.Ref, vendored, size, dash(shortDigest(im.Digest)), used)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "(none: FROM scratch)"
	}
	return s
}
