package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/storage/driver"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/artifact"
	"k2.dev/k2/provision/apply"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// DriftReport is what `k2 diff ENV` reports: how the running cluster
// differs from what its environment's artifact and values say. Its JSON
// shape is stable.
type DriftReport struct {
	Env string `json:"env"`
	// Deployment is the environment's current deployment, whose artifact
	// (Digest) and values (ValuesHash) the cluster is compared with.
	Deployment string `json:"deployment"`
	Digest     string `json:"digest"`
	ValuesHash string `json:"valuesHash,omitempty"`
	Layers     int    `json:"layers"`
	// Drifted: at least one difference.
	Drifted bool `json:"drifted"`
	*apply.DriftResult
	Warnings []string `json:"warnings,omitempty"`
}

// ArtifactOpener opens an artifact by reference (cmd passes artifact.Open
// on the local store, pulling when needed).
type ArtifactOpener func(ctx context.Context, ref string) (*artifact.Artifact, error)

// Drift compares env's running cluster with its current deployment: the
// objects of every manifests and app layer (Apps resolved with the values
// the deployment recorded) and of every chart layer (rendered as a Helm
// upgrade would render it now), per layer; see apply.Drift for what counts
// as added, changed and deleted. It changes nothing.
func Drift(ctx context.Context, s *state.Store, home, env string, open ArtifactOpener, log *slog.Logger) (*DriftReport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cur, last, err := engine.Current(ctx, s, env)
	if err != nil {
		return nil, err
	}
	rep := &DriftReport{Env: env, Deployment: cur.ID, Digest: cur.ArtifactDigest, ValuesHash: cur.ValuesHash}
	if last.ID != cur.ID {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the last deployment %s (%s) is %s; comparing with %s, the last that succeeded",
			last.ID, last.Op, last.Result, cur.ID))
	}
	a, err := open(ctx, artifact.PinnedRef(cur.ArtifactRef, cur.ArtifactDigest))
	if err != nil {
		return nil, err
	}
	values := cur.Values
	if cur.ValuesHash == "" {
		e, err := s.GetEnv(ctx, env)
		if err != nil {
			return nil, engine.UserError(err)
		}
		values = map[string]string{}
		for _, arg := range a.Config.Args {
			if arg.Default != nil {
				values[arg.Name] = *arg.Default
			}
		}
		for k, v := range e.Values {
			values[k] = v
		}
		rep.Warnings = append(rep.Warnings, "deployment "+cur.ID+" recorded no values (made by an older k2); using the ARG defaults and the environment's values")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(home, env))
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig of %s: %w", env, err)
	}
	cfg.Timeout = 30 * time.Second
	cfg.QPS, cfg.Burst = 100, 200
	var layers []apply.LayerObjects
	for _, l := range a.Config.Layers {
		lo := apply.LayerObjects{Name: l.Name}
		switch l.Kind {
		case artifact.KindManifests, artifact.KindApp:
			lo.Inventory = inventory(env, l.Name)
			if lo.Objects, err = layerObjects(ctx, a, l, values); err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Name, err)
			}
		case artifact.KindChart:
			manifest, ns, err := renderRelease(ctx, a, l.Name, home, env, values, log)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Name, err)
			}
			lo.Namespace = ns
			if lo.Objects, err = apply.Decode(strings.NewReader(manifest), l.Name); err != nil {
				return nil, fmt.Errorf("layer %s: %w", l.Name, err)
			}
		default:
			continue
		}
		layers = append(layers, lo)
	}
	rep.Layers = len(layers)
	if rep.DriftResult, err = apply.Drift(ctx, cfg, layers, apply.Options{AllowBeta: a.Config.AllowBeta, Logger: log}); err != nil {
		return nil, fmt.Errorf("comparing %s with its artifact: %w", env, err)
	}
	rep.Drifted = len(rep.Differences) > 0
	return rep, nil
}

// renderRelease renders a chart layer as an upgrade of its release would
// now (a dry run against the cluster), or as a fresh install when the
// release is gone; it returns the manifest and the release's namespace.
func renderRelease(ctx context.Context, a *artifact.Artifact, layer, home, env string, values map[string]string, log *slog.Logger) (string, string, error) {
	ch, spec, err := a.Chart(ctx, layer)
	if err != nil {
		return "", "", err
	}
	vals, err := chartValues(spec, values)
	if err != nil {
		return "", "", err
	}
	ac, err := helmConfig(home, env, spec.Namespace, log)
	if err != nil {
		return "", "", err
	}
	if _, err := action.NewHistory(ac).Run(spec.Release); errors.Is(err, driver.ErrReleaseNotFound) {
		in := action.NewInstall(ac)
		in.ReleaseName, in.Namespace, in.DryRun, in.ClientOnly = spec.Release, spec.Namespace, true, true
		rel, err := in.RunWithContext(ctx, ch, vals)
		if err != nil {
			return "", "", fmt.Errorf("rendering chart %s: %w", spec.Release, err)
		}
		return rel.Manifest, spec.Namespace, nil
	}
	up := action.NewUpgrade(ac)
	up.Namespace, up.DryRun = spec.Namespace, true
	rel, err := up.RunWithContext(ctx, spec.Release, ch, vals)
	if err != nil {
		return "", "", fmt.Errorf("rendering chart %s: %w", spec.Release, err)
	}
	return rel.Manifest, spec.Namespace, nil
}
