package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/kube"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	"helm.sh/helm/v3/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/provision/apply"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// SecretLayers is the state secret that records the layer digests of the
// environment's last deployment, for k2 upgrade.
const SecretLayers = "layers"

// LayerResult is what applying one layer did, as journaled.
type LayerResult struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Digest  string `json:"digest"`
	Skipped bool   `json:"skipped,omitempty"` // unchanged since the last deploy
	Objects int    `json:"objects"`
	Removed bool   `json:"removed,omitempty"` // gone from the new artifact
}

// applyLayers applies the artifact's layers in order, base first, each as a
// journaled item; then removes layers the previous deploy had and this
// artifact does not, and records the digests.
func (c *run) applyLayers(ctx context.Context, st *engine.State) error {
	cfg, err := c.restConfig(ctx, st)
	if err != nil {
		return err
	}
	values := map[string]string{}
	for _, v := range st.Plan.Values {
		values[v.Name] = v.Value
	}
	a := c.o.Artifact
	now := map[string]string{}
	for _, l := range a.Config.Layers {
		l := l
		now[l.Name] = fingerprint(l, values)
		if c.o.Previous != nil && c.o.Previous[l.Name] == now[l.Name] {
			st.Progress("", 0, "layer %s unchanged", l.Name)
			continue
		}
		res, err := engine.Do(ctx, st, "layer/"+l.Name, func(ctx context.Context) (LayerResult, error) {
			st.Progress("", 0, "applying layer %s (%s)", l.Name, l.Kind)
			n, err := c.applyLayer(ctx, st, cfg, l, values)
			return LayerResult{Name: l.Name, Kind: l.Kind, Digest: l.Digest, Objects: n}, err
		})
		if err != nil {
			return err
		}
		st.Progress("", 100, "layer %s applied (%d objects)", res.Name, res.Objects)
	}
	for name := range c.o.Previous {
		if _, ok := now[name]; ok {
			continue
		}
		if _, err := engine.Do(ctx, st, "remove/"+name, func(ctx context.Context) (LayerResult, error) {
			st.Progress("", 0, "removing layer %s", name)
			return LayerResult{Name: name, Removed: true}, c.removeLayer(ctx, st, cfg, name)
		}); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(now)
	return st.Store.PutSecret(ctx, st.Env.Name, SecretLayers, b)
}

// PreviousLayers returns the layer digests recorded by env's last deploy.
func PreviousLayers(ctx context.Context, s *state.Store, env string) (map[string]string, error) {
	b, err := s.GetSecret(ctx, env, SecretLayers)
	if errors.Is(err, state.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	return m, json.Unmarshal(b, &m)
}

// fingerprint identifies what applying a layer would do: its digest, and for
// layers with ${ARG} templates (Apps, charts) the values they are resolved
// with, so a changed value re-applies them on upgrade.
func fingerprint(l artifact.LayerSpec, values map[string]string) string {
	if l.Kind == artifact.KindManifests {
		return l.Digest
	}
	b, _ := json.Marshal(values) // map keys are sorted
	sum := sha256.Sum256(b)
	return l.Digest + "+values:" + hex.EncodeToString(sum[:8])
}

// layerProgress reports a layer's wait as progress events: what is not
// ready and why, each time that changes.
func layerProgress(st *engine.State, layer string) func(apply.WaitProgress) {
	return func(p apply.WaitProgress) {
		pct := 0
		if p.Total > 0 {
			pct = 100 * p.Ready / p.Total
		}
		st.Progress("", pct, "layer %s: %s", layer, p.Line)
	}
}

// applyLog is the logger for apply: its per-second progress lines duplicate
// the step events the deploy already prints, so they show only with -v.
func applyLog(ctx context.Context, st *engine.State) *slog.Logger {
	if st.Log.Enabled(ctx, slog.LevelDebug) {
		return st.Log
	}
	return nil
}

func inventory(env, layer string) string { return env + "." + layer }

func (c *run) applyLayer(ctx context.Context, st *engine.State, cfg *rest.Config, l artifact.LayerSpec, values map[string]string) (int, error) {
	a := c.o.Artifact
	switch l.Kind {
	case artifact.KindManifests, artifact.KindApp:
		objs, err := layerObjects(ctx, a, l, values)
		if err != nil {
			return 0, err
		}
		_, err = apply.Apply(ctx, cfg, objs, apply.Options{
			AllowBeta: a.Config.AllowBeta, Inventory: inventory(st.Env.Name, l.Name), Prune: true,
			Wait: true, Timeout: c.o.ReadyTimeout, PullGrace: c.o.PullGrace, Logger: applyLog(ctx, st),
			Progress: layerProgress(st, l.Name),
		})
		return len(objs), err
	case artifact.KindChart:
		ch, spec, err := a.Chart(ctx, l.Name)
		if err != nil {
			return 0, err
		}
		manifest, err := c.installChart(ctx, st, ch, spec, values)
		if err != nil {
			return 0, err
		}
		// Watched like every other layer: every object the release made.
		refs, err := releaseObjects(manifest, spec.Release)
		if err != nil {
			return 0, err
		}
		_, err = apply.Wait(ctx, cfg, refs, apply.WaitOptions{
			Namespace: spec.Namespace, Timeout: c.o.ReadyTimeout, PullGrace: c.o.PullGrace,
			Logger: applyLog(ctx, st), Progress: layerProgress(st, l.Name),
		})
		return len(refs), err
	}
	return 0, fmt.Errorf("layer %s: unknown kind %q", l.Name, l.Kind)
}

// layerObjects are the objects of a manifests or app layer, an App's
// ${ARG} templates resolved with values.
func layerObjects(ctx context.Context, a *artifact.Artifact, l artifact.LayerSpec, values map[string]string) ([]*unstructured.Unstructured, error) {
	files, err := a.Files(ctx, l.Name)
	if err != nil {
		return nil, err
	}
	var objs []*unstructured.Unstructured
	for _, f := range files {
		data := f.Data
		if l.Kind == artifact.KindApp {
			s, err := k8sfile.Expand(string(f.Data), values)
			if err != nil {
				return nil, fmt.Errorf("APP %s: %w", l.Name, err)
			}
			data = []byte(s)
		}
		if !apply.IsManifest(f.Name) {
			continue
		}
		o, err := apply.Decode(bytes.NewReader(data), l.Name+"/"+f.Name)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o...)
	}
	return objs, nil
}

// chartValues are the values a chart layer is installed with: the chart's
// defaults, then the values= file, then set pairs with ARGs resolved.
func chartValues(spec *artifact.ChartSpec, values map[string]string) (map[string]any, error) {
	vals := map[string]any{}
	for k, v := range spec.Values {
		vals[k] = v
	}
	for _, kv := range spec.Set {
		v, err := k8sfile.Expand(kv.Value, values)
		if err != nil {
			return nil, fmt.Errorf("chart %s set %s: %w", spec.Release, kv.Key, err)
		}
		if err := strvals.ParseInto(kv.Key+"="+v, vals); err != nil {
			return nil, fmt.Errorf("chart %s set %s: %w", spec.Release, kv.Key, err)
		}
	}
	return vals, nil
}

// installChart installs or upgrades a vendored chart with the Helm SDK —
// the chart's defaults, then the values= file, then set pairs (with ARGs
// resolved for the environment) — and returns the release's manifest.
// Helm does not wait: the layer's objects are watched by apply.Wait.
func (c *run) installChart(ctx context.Context, st *engine.State, ch *chart.Chart, spec *artifact.ChartSpec, values map[string]string) (string, error) {
	vals, err := chartValues(spec, values)
	if err != nil {
		return "", err
	}
	ac, err := c.helm(st, spec.Namespace)
	if err != nil {
		return "", err
	}
	last, err := ac.Releases.Last(spec.Release)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		in := action.NewInstall(ac)
		in.ReleaseName, in.Namespace, in.CreateNamespace = spec.Release, spec.Namespace, true
		in.Timeout = c.o.ReadyTimeout
		rel, err := in.RunWithContext(ctx, ch, vals)
		if err != nil {
			return "", fmt.Errorf("installing chart %s: %w", spec.Release, err)
		}
		return rel.Manifest, nil
	}
	if err != nil {
		return "", fmt.Errorf("reading chart %s's release: %w", spec.Release, err)
	}
	if last.Info.Status.IsPending() {
		// A deploy killed during Helm's install or upgrade left it pending;
		// this deploy holds the environment's lock, so nobody else is at it.
		st.Log.Info("marking an interrupted Helm operation failed", "release", spec.Release, "status", last.Info.Status)
		last.SetStatus(release.StatusFailed, "interrupted (k2 deploy was stopped during it)")
		if err := ac.Releases.Update(last); err != nil {
			return "", fmt.Errorf("chart %s: clearing the interrupted %s: %w", spec.Release, last.Info.Status, err)
		}
	}
	up := action.NewUpgrade(ac)
	up.Namespace, up.Timeout = spec.Namespace, c.o.ReadyTimeout
	rel, err := up.RunWithContext(ctx, spec.Release, ch, vals)
	if err != nil {
		return "", fmt.Errorf("upgrading chart %s: %w", spec.Release, err)
	}
	return rel.Manifest, nil
}

// releaseObjects lists the objects of a release's manifest.
func releaseObjects(manifest, release string) ([]apply.ObjectRef, error) {
	objs, err := apply.Decode(strings.NewReader(manifest), "chart "+release)
	if err != nil {
		return nil, fmt.Errorf("reading chart %s's manifest: %w", release, err)
	}
	refs := make([]apply.ObjectRef, 0, len(objs))
	for _, o := range objs {
		refs = append(refs, apply.ObjectRef{APIVersion: o.GetAPIVersion(), Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()})
	}
	return refs, nil
}

func (c *run) helm(st *engine.State, namespace string) (*action.Configuration, error) {
	return helmConfig(c.o.Home, st.Env.Name, namespace, st.Log)
}

// helmConfig is a Helm client of env's cluster for namespace.
func helmConfig(home, env, namespace string, log *slog.Logger) (*action.Configuration, error) {
	ac := new(action.Configuration)
	getter := kube.GetConfig(KubeconfigPath(home, env), "", namespace)
	if err := ac.Init(getter, namespace, "secret", func(format string, v ...any) {
		log.Debug(fmt.Sprintf(format, v...), "component", "helm")
	}); err != nil {
		return nil, err
	}
	return ac, nil
}

// removeLayer deletes what a layer the new artifact no longer has made: the
// objects of its inventory, or its Helm release.
func (c *run) removeLayer(ctx context.Context, st *engine.State, cfg *rest.Config, name string) error {
	// A Helm release of that name, in any namespace the chart used.
	ac, err := c.helm(st, "")
	if err == nil {
		list := action.NewList(ac)
		list.AllNamespaces = true
		if rels, err := list.Run(); err == nil {
			for _, r := range rels {
				if r.Name == name {
					nac, err := c.helm(st, r.Namespace)
					if err != nil {
						return err
					}
					if _, err := action.NewUninstall(nac).Run(name); err != nil {
						return fmt.Errorf("uninstalling chart %s: %w", name, err)
					}
				}
			}
		}
	}
	_, err = apply.Apply(ctx, cfg, nil, apply.Options{Inventory: inventory(st.Env.Name, name), Prune: true, Logger: applyLog(ctx, st)})
	return err
}
