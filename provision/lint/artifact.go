package lint

import (
	"context"
	"fmt"
	"strings"

	"k2.dev/k2/artifact"
	"k2.dev/k2/provision/apply"
)

// Artifact lints every layer of a k2 artifact: manifests and App layers as
// stored, chart layers rendered with the chart's defaults plus the layer's
// values file (set= pairs may hold ${ARG} templates and are not applied).
// Sources read "<layer>: <file>:<line>".
func Artifact(ctx context.Context, a *artifact.Artifact) (*Report, error) {
	r := &Report{Findings: []Finding{}}
	for _, l := range a.Config.Layers {
		switch l.Kind {
		case artifact.KindManifests, artifact.KindApp:
			files, err := a.Files(ctx, l.Name)
			if err != nil {
				return nil, fmt.Errorf("linting layer %s: %w", l.Name, err)
			}
			for _, f := range files {
				if !apply.IsManifest(f.Name) {
					continue
				}
				objs, err := apply.Decode(strings.NewReader(string(f.Data)), l.Name+": "+f.Name)
				r.add(objs, err, l.Name+": "+f.Name)
			}
		case artifact.KindChart:
			ch, spec, err := a.Chart(ctx, l.Name)
			if err != nil {
				return nil, fmt.Errorf("linting layer %s: %w", l.Name, err)
			}
			objs, err := RenderChart(ch, spec.Values, l.Name)
			r.add(objs, err, l.Name)
		}
	}
	return r, nil
}
