package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/engine"
)

func newDiffCmd(g *globals) *cobra.Command {
	var rf remoteFlags
	cmd := &cobra.Command{
		Use:   "diff <env>",
		Short: "Show how a running cluster drifted from its artifact and values",
		Long: `Compare the environment's running cluster with what its current deployment
(artifact digest and the ARG values it resolved) says it should be, layer by
layer, and list every object:

  changed   applying the layer's object now would change it: someone edited
            fields the layer sets (each field with its live and wanted value,
            and who edited it, e.g. kubectl-edit)
  deleted   the layer's object is gone
  added     an object nobody's layer holds, made by hand in a namespace and
            resource a layer fills (or labelled with a layer's inventory)

Manifests and Apps are compared by a server-side apply dry run, charts as a
Helm upgrade would render them now; nothing is changed. It exits 0 when the
cluster matches and 1 when it differs; -o json lists every difference.
'k2 upgrade ENV REF' (or 'k2 rollback') puts the cluster back.`,
		Example: `  k2 diff staging
  k2 diff prod -o json | jq '.differences[] | {layer, change, object}'`,
		Args: exactArgs(1),
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
			rep, err := cluster.Drift(ctx, s, g.home, args[0], g.artifactOpener(rf), g.logger())
			if err != nil {
				return err
			}
			if err := output.Render(g.stdout, f, rep, func(w io.Writer) error { return writeDrift(w, rep) }); err != nil {
				return err
			}
			if rep.Drifted {
				return usererr.New(usererr.KindFailure, "%s differs from its artifact in %d object(s)", rep.Env, len(rep.Differences))
			}
			return nil
		},
	}
	rf.register(cmd)
	return cmd
}

func writeDrift(w io.Writer, rep *cluster.DriftReport) error {
	for _, warn := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	head := fmt.Sprintf("%s against %s (values %s, deployment %s)", rep.Env, engine.ShortDigest(rep.Digest), engine.ShortDigest(rep.ValuesHash), rep.Deployment)
	if !rep.Drifted {
		_, err := fmt.Fprintf(w, "no drift: %s: %d objects in %d layers match\n", head, rep.Checked, rep.Layers)
		return err
	}
	fmt.Fprintf(w, "drift: %s: %d of %d objects differ\n", head, len(rep.Differences), rep.Checked)
	t := output.Table(w)
	fmt.Fprintln(t, "LAYER\tCHANGE\tOBJECT\tBY\tDETAIL")
	for _, d := range rep.Differences {
		obj := d.Object.Kind + " "
		if d.Object.Namespace != "" {
			obj += d.Object.Namespace + "/"
		}
		obj += d.Object.Name
		by := strings.Join(d.Managers, ",")
		var detail []string
		for _, fc := range d.Fields {
			detail = append(detail, fmt.Sprintf("%s: %s (want %s)", fc.Path, jsonText(fc.Live), jsonText(fc.Want)))
		}
		if len(detail) == 0 {
			detail = []string{"-"}
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", d.Layer, d.Change, obj, dash(by), detail[0])
		for _, more := range detail[1:] {
			fmt.Fprintf(t, "\t\t\t\t%s\n", more)
		}
	}
	return t.Flush()
}

// jsonText shows a field value compactly; absent is <none>.
func jsonText(v any) string {
	if v == nil {
		return "<none>"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	s := string(b)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
