package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"
	"sigs.k8s.io/yaml"

	"k2.dev/k2/artifact/k8sfile"
	"k2.dev/k2/internal/usererr"
)

// install builds an INSTALL layer: the chart is fetched now and vendored,
// so deploying needs no network access to chart sources.
func (b *builder) install(ctx context.Context, l *k8sfile.Install) (*LayerSpec, []byte, error) {
	ref, err := k8sfile.ParseChartRef(l.Chart)
	if err != nil {
		return nil, nil, err
	}
	// A bad values file does not stop the chart from being fetched: both
	// problems are reported at once.
	vals, valsErr := b.values(l.ValuesFile)
	var archive []byte
	switch ref.Kind {
	case k8sfile.ChartOCI:
		archive, err = b.fetchOCIChart(ctx, ref, l.Version)
	case k8sfile.ChartRepoURL:
		archive, err = b.fetchRepoChart(ctx, ref.RepoURL, ref.Chart, l.Version)
	case k8sfile.ChartAlias:
		if u, ok := b.opts.Repos.URL(ref.Alias); ok {
			archive, err = b.fetchRepoChart(ctx, u, ref.Chart, l.Version)
		} else {
			err = fmt.Errorf("chart repository %q is not known; run k2 repo add %s <url>", ref.Alias, ref.Alias)
		}
	default:
		err = fmt.Errorf("chart %q: unknown reference kind", l.Chart)
	}
	if err != nil || valsErr != nil {
		return nil, nil, errors.Join(valsErr, err)
	}
	var set []KV
	for _, kv := range l.Set {
		set = append(set, KV{Key: kv.Key, Value: kv.Value})
	}
	spec, blob, err := b.chartLayer(l.Name, l.Chart, archive, l.Name, l.Namespace, vals, set)
	if err != nil {
		return nil, nil, err
	}
	b.log.Info("vendored chart", "chart", l.Chart, "version", spec.Chart.Version, "size", len(archive))
	return spec, blob, nil
}

// values reads an INSTALL values= file of the build context ("": none).
func (b *builder) values(file string) (map[string]any, error) {
	if file == "" {
		return nil, nil
	}
	data, err := b.readCtxFile(file)
	if err != nil {
		return nil, fmt.Errorf("values=%s: %w", file, err)
	}
	v, err := chartutil.ReadValues(data)
	if err != nil {
		return nil, fmt.Errorf("values=%s: not a YAML map of chart values: %w", file, err)
	}
	return v, nil
}

// fetchOCIChart pulls a chart from an OCI registry with Helm's registry
// client: the version from the reference, else version=, else the newest
// semver tag.
func (b *builder) fetchOCIChart(ctx context.Context, ref k8sfile.ChartRef, version string) ([]byte, error) {
	host := ref.Repository[:strings.IndexByte(ref.Repository, '/')]
	opts := []registry.ClientOption{registry.ClientOptWriter(io.Discard)}
	if b.opts.Remote.Insecure || isLoopback(host) {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	c, err := registry.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	target := ref.Repository
	switch {
	case ref.Digest != "":
		target += "@" + ref.Digest
	case ref.Tag != "":
		target += ":" + ref.Tag
	case version != "":
		target += ":" + strings.ReplaceAll(version, "+", "_")
	default:
		tags, err := c.Tags(ref.Repository)
		if err != nil {
			return nil, registryErr("listing chart versions of", ref.Ref, err)
		}
		if len(tags) == 0 {
			return nil, fmt.Errorf("chart %s has no versions (no semver tags); add version=", ref.Ref)
		}
		target += ":" + strings.ReplaceAll(tags[0], "+", "_")
	}
	res, err := c.Pull(target, registry.PullOptWithChart(true))
	if err != nil {
		return nil, registryErr("pulling chart", "oci://"+target, err)
	}
	return res.Chart.Data, nil
}

// fetchRepoChart fetches index.yaml of a classic Helm repository, picks the
// chart version (newest stable, or matching version=, a version or a semver
// constraint) and downloads it, checking the index's digest.
func (b *builder) fetchRepoChart(ctx context.Context, repoURL, chart, version string) ([]byte, error) {
	base, err := url.Parse(strings.TrimSuffix(repoURL, "/") + "/")
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", repoURL, err)
	}
	idxURL := base.ResolveReference(&url.URL{Path: "index.yaml"})
	data, err := b.httpGet(ctx, idxURL.String())
	if err != nil {
		return nil, err
	}
	var idx repo.IndexFile
	if err := yaml.Unmarshal(data, &idx); err != nil {
		return nil, usererr.Wrap(usererr.KindRegistry, fmt.Errorf("reading %s: %w", idxURL, err), "")
	}
	idx.SortEntries()
	cv, err := idx.Get(chart, version)
	if err != nil {
		var have []string
		for _, v := range idx.Entries[chart] {
			have = append(have, v.Version)
		}
		if len(have) == 0 {
			return nil, fmt.Errorf("chart %q is not in repository %s", chart, repoURL)
		}
		return nil, fmt.Errorf("chart %s has no version matching %q (have %s)", chart, version, strings.Join(have, ", "))
	}
	if len(cv.URLs) == 0 {
		return nil, usererr.New(usererr.KindRegistry, "chart %s %s in %s has no download URL", chart, cv.Version, repoURL)
	}
	u, err := url.Parse(cv.URLs[0])
	if err != nil {
		return nil, usererr.New(usererr.KindRegistry, "chart %s %s: bad URL %q", chart, cv.Version, cv.URLs[0])
	}
	archive, err := b.httpGet(ctx, base.ResolveReference(u).String())
	if err != nil {
		return nil, err
	}
	if cv.Digest != "" {
		sum := sha256.Sum256(archive)
		if got := hex.EncodeToString(sum[:]); got != strings.TrimPrefix(cv.Digest, "sha256:") {
			return nil, usererr.New(usererr.KindRegistry, "chart %s %s from %s: digest %s does not match the index's %s", chart, cv.Version, repoURL, got, cv.Digest)
		}
	}
	return archive, nil
}

// httpGet fetches url; non-2xx answers are registry errors.
func (b *builder) httpGet(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "k2")
	client := b.opts.Remote.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindRegistry, fmt.Errorf("fetching %s: %w", u, err), "check the repository URL and your network")
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, usererr.New(usererr.KindRegistry, "fetching %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindRegistry, fmt.Errorf("fetching %s: %w", u, err), "")
	}
	return data, nil
}
