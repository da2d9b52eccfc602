package artifact_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	helmregistry "helm.sh/helm/v3/pkg/registry"
	"helm.sh/helm/v3/pkg/repo"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/registrytest"
	"k2.dev/k2/internal/usererr"
)

// packChart packages a chart made of files (Chart.yaml is generated) with
// Helm's own packager and returns the .tgz bytes.
func packChart(t testing.TB, name, version string, files map[string]string) []byte {
	t.Helper()
	bf := []*loader.BufferedFile{{Name: "Chart.yaml", Data: []byte("apiVersion: v2\nname: " + name + "\nversion: " + version + "\n")}}
	for n, d := range files {
		bf = append(bf, &loader.BufferedFile{Name: n, Data: []byte(d)})
	}
	ch, err := loader.LoadFiles(bf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := chartutil.Save(ch, dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// serveChartRepo serves a classic Helm repository (index.yaml plus the
// archives) on loopback and returns its URL.
func serveChartRepo(t testing.TB, charts ...[]byte) string {
	t.Helper()
	dir := t.TempDir()
	idx := repo.NewIndexFile()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	for _, c := range charts {
		ch, err := loader.LoadArchive(strings.NewReader(string(c)))
		if err != nil {
			t.Fatal(err)
		}
		fn := ch.Name() + "-" + ch.Metadata.Version + ".tgz"
		if err := os.WriteFile(filepath.Join(dir, fn), c, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(c)
		if err := idx.MustAdd(ch.Metadata, fn, srv.URL+"/charts", hex.EncodeToString(sum[:])); err != nil {
			t.Fatal(err)
		}
	}
	// Download URLs relative to the repository, as most repositories write them.
	for _, vs := range idx.Entries {
		for _, v := range vs {
			v.URLs = []string{filepath.Base(v.URLs[0])}
		}
	}
	if err := idx.WriteFile(filepath.Join(dir, "index.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL
}

// pushOCIChart pushes a chart archive to the registry at host with Helm's
// registry client and returns the oci:// repository.
func pushOCIChart(t testing.TB, host string, archive []byte) string {
	t.Helper()
	ch, err := loader.LoadArchive(strings.NewReader(string(archive)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := helmregistry.NewClient(helmregistry.ClientOptPlainHTTP())
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/charts/" + ch.Name() + ":" + ch.Metadata.Version
	if _, err := c.Push(archive, ref, helmregistry.PushOptCreationTime("2024-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	return "oci://" + host + "/charts/" + ch.Name()
}

var cacheTemplates = map[string]string{
	"values.yaml": "replicas: 1\nport: 6379\n",
	"templates/deploy.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicas }}
`,
	"templates/svc.yaml": `{{- if .Values.service }}
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
spec:
  ports: [{port: {{ .Values.port }}}]
{{- end }}
`,
	"templates/NOTES.txt": "installed {{ .Release.Name }}\n",
}

func TestInstallVendorsCharts(t *testing.T) {
	v1 := packChart(t, "cache", "1.0.0", cacheTemplates)
	v2 := packChart(t, "cache", "1.2.0", cacheTemplates)
	repoURL := serveChartRepo(t, v1, v2)
	host := registrytest.New(t)
	ociRepo := pushOCIChart(t, host, v2)

	home := t.TempDir()
	repos, err := artifact.LoadRepos(artifact.ReposFile(home))
	if err != nil {
		t.Fatal(err)
	}
	if err := repos.Add("stable", repoURL); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, install string
		wantVersion   string
		wantArchive   []byte
		wantObjects   []artifact.Object
	}{
		{"repo url newest", "INSTALL " + repoURL + "#cache", "1.2.0", v2, nil},
		{"repo url pinned", "INSTALL " + repoURL + "#cache version=1.0.0", "1.0.0", v1, nil},
		{"repo url constraint", "INSTALL " + repoURL + "#cache version=~1.0", "1.0.0", v1, nil},
		{"alias", "INSTALL helm/stable/cache version=1.0.0 namespace=data", "1.0.0", v1,
			[]artifact.Object{{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "data", Name: "cache", File: "cache/templates/deploy.yaml"}}},
		{"oci newest tag", "INSTALL " + ociRepo, "1.2.0", v2, nil},
		{"oci with version", "INSTALL " + ociRepo + " version=1.2.0 name=redis set service=true",
			"1.2.0", v2, []artifact.Object{
				{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "default", Name: "redis", File: "cache/templates/deploy.yaml"},
				{APIVersion: "v1", Kind: "Service", Name: "redis", File: "cache/templates/svc.yaml"},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"K8sfile": "FROM scratch\n" + tc.install + "\n"})
			res := mustBuild(t, newStore(t), dir, "c:v1", func(o *artifact.BuildOptions) { o.Repos = repos })
			l := res.Config.Layers[0]
			if l.Kind != artifact.KindChart || l.Chart.Version != tc.wantVersion {
				t.Fatalf("layer %+v", l)
			}
			sum := sha256.Sum256(tc.wantArchive)
			if l.Digest != "sha256:"+hex.EncodeToString(sum[:]) {
				t.Errorf("layer is not the vendored archive byte for byte: %s", l.Digest)
			}
			if tc.wantObjects != nil {
				if diff := cmp.Diff(tc.wantObjects, l.Objects); diff != "" {
					t.Errorf("objects (-want +got):\n%s", diff)
				}
			}
		})
	}

	t.Run("values file and set are stored", func(t *testing.T) {
		dir := writeTree(t, map[string]string{
			"K8sfile":   "FROM scratch\nARG n=3\nINSTALL " + repoURL + "#cache values=vals.yaml set replicas=${n} set service=true\n",
			"vals.yaml": "port: 7000\nextra:\n  a: b\n",
		})
		res := mustBuild(t, newStore(t), dir, "c:v1", nil)
		ch := res.Config.Layers[0].Chart
		want := &artifact.ChartSpec{Name: "cache", Version: "1.2.0", Release: "cache", Namespace: "default",
			Values: map[string]any{"port": float64(7000), "extra": map[string]any{"a": "b"}},
			Set:    []artifact.KV{{Key: "replicas", Value: "${n}"}, {Key: "service", Value: "true"}},
			Digest: res.Config.Layers[0].Digest}
		// Values round-trip through JSON in a real config; compare that way.
		got := *ch
		got.Values = jsonRoundTrip(t, got.Values)
		if diff := cmp.Diff(want, &got); diff != "" {
			t.Errorf("chart spec (-want +got):\n%s", diff)
		}
	})
}

func TestInstallErrors(t *testing.T) {
	repoURL := serveChartRepo(t, packChart(t, "cache", "1.0.0", cacheTemplates))
	cases := []struct{ name, line, want string }{
		{"unknown alias", "INSTALL helm/nope/cache", `K8sfile:2:1: INSTALL: chart repository "nope" is not known; run k2 repo add nope <url>`},
		{"unknown chart", "INSTALL " + repoURL + "#other", `chart "other" is not in repository`},
		{"no such version", "INSTALL " + repoURL + "#cache version=9.9.9", `chart cache has no version matching "9.9.9" (have 1.0.0)`},
		{"missing values file", "INSTALL " + repoURL + "#cache values=nope.yaml", "values=nope.yaml: nope.yaml does not exist in the build context"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"K8sfile": "FROM scratch\n" + tc.line + "\n"})
			_, err := build(t, newStore(t), dir, "c:v1", nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.want)
			}
			var ue *usererr.Error
			if !errors.As(err, &ue) || ue.Kind != usererr.KindInvalid {
				t.Errorf("kind = %v, want invalid (exit 3)", err)
			}
		})
	}
}

func jsonRoundTrip(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
