package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/ignore"
	"helm.sh/helm/v3/pkg/strvals"

	"k2.dev/k2/artifact/k8sfile"
)

// packChartDir packs the chart directory dir of fsys as a reproducible
// Helm chart archive (one top-level directory named after the chart),
// honouring .helmignore.
func packChartDir(fsys fs.FS, dir string) ([]byte, error) {
	rules := ignore.Empty()
	if data, err := fs.ReadFile(fsys, path.Join(dir, ignore.HelmIgnore)); err == nil {
		r, err := ignore.Parse(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path.Join(dir, ignore.HelmIgnore), err)
		}
		rules = r
	}
	rules.AddDefaults()
	files, err := readTree(fsys, dir, func(rel string, d fs.DirEntry) bool {
		fi, err := d.Info()
		return err == nil && !rules.Ignore(rel, fi)
	})
	if err != nil {
		return nil, fmt.Errorf("reading chart %s: %w", dir, err)
	}
	var bf []*loader.BufferedFile
	for _, f := range files {
		bf = append(bf, &loader.BufferedFile{Name: f.Name, Data: f.Data})
	}
	ch, err := loader.LoadFiles(bf)
	if err != nil {
		return nil, fmt.Errorf("chart %s does not load: %w; fix %s (a chart needs apiVersion, name and version; helm lint %s shows more)",
			dir, err, path.Join(dir, "Chart.yaml"), dir)
	}
	for i := range files {
		files[i].Name = ch.Name() + "/" + files[i].Name
	}
	return tarGz(files)
}

// chartLayer makes a chart layer from a chart archive: it loads the chart,
// renders it with its default values plus vals and set (as helm template
// would, with the cluster's Kubernetes version and stable API versions) and
// lists the objects it creates, CRDs included.
func (b *builder) chartLayer(name, source string, archive []byte, release, namespace string, vals map[string]any, set []KV) (*LayerSpec, []byte, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(archive))
	if err != nil {
		return nil, nil, fmt.Errorf("chart %s does not load: %w; give a Helm chart archive (helm package), or the chart's directory", source, err)
	}
	if release == "" {
		release = ch.Name()
	}
	if namespace == "" {
		namespace = "default"
	}
	if name == "" {
		name = release
	}
	objs, err := b.renderChart(ch, release, namespace, vals, set)
	if err != nil {
		return nil, nil, fmt.Errorf("rendering chart %s: %w; fix the chart's templates, or the values (values=, set) they are given", ch.Name(), err)
	}
	spec := &LayerSpec{Name: name, Kind: KindChart, MediaType: ChartMediaType, Source: source, Objects: objs,
		Chart: &ChartSpec{Name: ch.Name(), Version: ch.Metadata.Version, AppVersion: ch.Metadata.AppVersion,
			Release: release, Namespace: namespace, Values: vals, Set: set}}
	return spec, archive, nil
}

// renderChart renders ch and returns its objects, ordered by template name.
func (b *builder) renderChart(ch *chart.Chart, release, namespace string, vals map[string]any, set []KV) ([]Object, error) {
	for _, dep := range ch.Metadata.Dependencies {
		found := false
		for _, sub := range ch.Dependencies() {
			if sub.Name() == dep.Name {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("dependency %s is not vendored in charts/; run helm dependency build before k2 build", dep.Name)
		}
	}
	caps := b.capabilities()
	if kv := ch.Metadata.KubeVersion; kv != "" && b.cfg.Kubernetes != "" &&
		!chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart %s %s requires Kubernetes %s, the cluster runs %s; pick another chart version",
			ch.Name(), ch.Metadata.Version, kv, b.cfg.Kubernetes)
	}
	values := map[string]any{}
	for k, v := range vals {
		values[k] = v
	}
	defaults := b.argDefaults()
	for _, kv := range set {
		v := kv.Value
		if e, err := k8sfile.Expand(v, defaults); err == nil {
			v = e
		}
		if err := strvals.ParseInto(kv.Key+"="+v, values); err != nil {
			return nil, fmt.Errorf("set %s=%s: %w", kv.Key, kv.Value, err)
		}
	}
	if err := chartutil.ProcessDependenciesWithMerge(ch, values); err != nil {
		return nil, err
	}
	rv, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{
		Name: release, Namespace: namespace, Revision: 1, IsInstall: true}, caps)
	if err != nil {
		return nil, err
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, err
	}
	b.rendered = out // for the images the chart's workloads use (vendor.go)
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []Object
	var errs []error
	for _, crd := range ch.CRDObjects() {
		found, err := objectsOf(crd.File.Data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", crd.Filename, err))
			continue
		}
		for i := range found {
			found[i].File = crd.Filename
		}
		objs = append(objs, found...)
	}
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" || strings.TrimSpace(out[n]) == "" {
			continue
		}
		found, err := objectsOf([]byte(out[n]))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
			continue
		}
		for i := range found {
			found[i].File = n
		}
		objs = append(objs, found...)
	}
	return objs, errors.Join(errs...)
}

// capabilities are what charts see as .Capabilities at build: the cluster's
// Kubernetes version and Helm's known API versions minus alpha and beta.
func (b *builder) capabilities() *chartutil.Capabilities {
	caps := chartutil.DefaultCapabilities.Copy()
	if kv, err := chartutil.ParseKubeVersion(b.cfg.Kubernetes); err == nil && b.cfg.Kubernetes != "" {
		caps.KubeVersion = *kv
	}
	if !b.opts.AllowBeta {
		var stable chartutil.VersionSet
		for _, v := range caps.APIVersions {
			if !preReleaseSegment.MatchString(v) {
				stable = append(stable, v)
			}
		}
		caps.APIVersions = stable
	}
	return caps
}

// preReleaseSegment matches a capabilities entry ("group/version[/Kind]")
// whose version is alpha or beta.
var preReleaseSegment = regexp.MustCompile(`(^|/)v[0-9]+(alpha|beta)[0-9]*(/|$)`)

// argDefaults returns the ARG defaults, for rendering charts at build time.
func (b *builder) argDefaults() map[string]string {
	m := map[string]string{}
	for _, a := range b.cfg.Args {
		if a.Default != nil {
			m[a.Name] = *a.Default
		}
	}
	return m
}
