package artifact_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/registrytest"
)

// conformanceDir holds the published conformance fixtures: OCI image
// layouts, valid/ and invalid/, each with one manifest tagged "artifact",
// and cases.json saying what each must give and why (docs/spec.md).
const conformanceDir = "../docs/spec/conformance"

type conformanceCase struct {
	Name  string `json:"name"`
	Valid bool   `json:"valid"`
	Why   string `json:"why"`
	// Error is a substring of k2's own error (other checkers word theirs).
	Error string `json:"k2Error,omitempty"`
}

// mutation makes an invalid fixture from the valid "scratch" one.
type mutation struct {
	conformanceCase
	mutate func(f *fixture)
}

var mutations = []mutation{
	{conformanceCase{Name: "invalid/artifact-type", Why: "the manifest's artifactType is not application/vnd.k2.cluster.v1", Error: "artifactType"},
		func(f *fixture) { f.manifest.ArtifactType = "application/vnd.example.other.v1" }},
	{conformanceCase{Name: "invalid/config-media-type", Why: "the config blob's media type is not application/vnd.k2.cluster.config.v1+json", Error: "config media type"},
		func(f *fixture) { f.manifest.Config.MediaType = "application/json" }},
	{conformanceCase{Name: "invalid/config-version", Why: "the config's version is not k2.dev/cluster/v1 (a reader refuses versions it does not know)", Error: "/version"},
		func(f *fixture) { f.config["version"] = "k2.dev/cluster/v2" }},
	{conformanceCase{Name: "invalid/kubernetes-version", Why: "kubernetes must be vMAJOR.MINOR.PATCH", Error: "/kubernetes"},
		func(f *fixture) { f.config["kubernetes"] = "1.37" }},
	{conformanceCase{Name: "invalid/layer-kind", Why: "a layer kind must be manifests, chart or app", Error: "/layers/0/kind"},
		func(f *fixture) { f.layer(0)["kind"] = "kustomize" }},
	{conformanceCase{Name: "invalid/layer-kind-media-type", Why: "a layer's media type must match its kind", Error: "/layers/0/mediaType"},
		func(f *fixture) {
			f.layer(0)["mediaType"] = artifact.AppMediaType
			f.manifest.Layers[0].MediaType = artifact.AppMediaType
		}},
	{conformanceCase{Name: "invalid/layer-count", Why: "the config lists a layer the manifest does not have", Error: "manifest has 1 layers"},
		func(f *fixture) {
			l := map[string]any{}
			for k, v := range f.layer(0) {
				l[k] = v
			}
			l["name"] = "extra"
			f.config["layers"] = append(f.config["layers"].([]any), l)
		}},
	{conformanceCase{Name: "invalid/layer-digest", Why: "the config's layer digest is not the manifest's", Error: "manifest says"},
		func(f *fixture) { f.layer(0)["digest"] = "sha256:" + strings.Repeat("0", 64) }},
	{conformanceCase{Name: "invalid/layer-title", Why: "the layer descriptor's org.opencontainers.image.title must be the layer's name", Error: "annotations"},
		func(f *fixture) { delete(f.manifest.Layers[0].Annotations, ocispec.AnnotationTitle) }},
	{conformanceCase{Name: "invalid/blob-digest", Why: "a layer blob's bytes do not match its digest", Error: "layer 0 (config)"},
		func(f *fixture) { f.corrupt = f.manifest.Layers[0].Digest }},
	{conformanceCase{Name: "invalid/manifests-not-tar", Why: "a manifests layer must be a gzipped tar", Error: "not a gzipped tar"},
		func(f *fixture) { f.replaceLayer(0, []byte("kind: ConfigMap\n")) }},
	{conformanceCase{Name: "invalid/app-not-app", Why: "an app layer holds exactly one k2.dev/v1 App", Error: "one k2.dev/v1 App"},
		func(f *fixture) {
			f.layer(0)["kind"] = artifact.KindApp
			f.layer(0)["mediaType"] = artifact.AppMediaType
			f.manifest.Layers[0].MediaType = artifact.AppMediaType
			f.manifest.Layers[0].Annotations[artifact.AnnotationLayerKind] = artifact.KindApp
			f.replaceLayer(0, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"))
		}},
}

// fixture is an artifact being written as an OCI layout.
type fixture struct {
	manifest ocispec.Manifest
	config   map[string]any
	blobs    map[digest.Digest][]byte
	corrupt  digest.Digest
}

func (f *fixture) layer(i int) map[string]any {
	return f.config["layers"].([]any)[i].(map[string]any)
}

// replaceLayer swaps layer i's bytes, keeping config and manifest in step.
func (f *fixture) replaceLayer(i int, b []byte) {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	f.manifest.Layers[i].Digest, f.manifest.Layers[i].Size = d, int64(len(b))
	f.layer(i)["digest"], f.layer(i)["size"] = d.String(), len(b)
}

// write stores f as an OCI image layout in dir, its manifest tagged "artifact".
func (f *fixture) write(t *testing.T, dir string) {
	t.Helper()
	os.RemoveAll(dir)
	cb, err := json.Marshal(f.config)
	if err != nil {
		t.Fatal(err)
	}
	f.manifest.Config.Digest, f.manifest.Config.Size = digest.FromBytes(cb), int64(len(cb))
	mb, err := json.Marshal(f.manifest)
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[digest.Digest][]byte{digest.FromBytes(cb): cb, digest.FromBytes(mb): mb}
	for _, l := range f.manifest.Layers {
		blobs[l.Digest] = f.blobs[l.Digest]
	}
	for d, b := range blobs {
		if d == f.corrupt {
			b = append([]byte("tampered "), b...)
		}
		p := filepath.Join(dir, "blobs", "sha256", d.Encoded())
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx := ocispec.Index{Versioned: f.manifest.Versioned, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)),
			ArtifactType: f.manifest.ArtifactType, Annotations: map[string]string{ocispec.AnnotationRefName: "artifact"}}}}
	ib, _ := json.MarshalIndent(idx, "", "  ")
	os.WriteFile(filepath.Join(dir, "index.json"), append(ib, '\n'), 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`+"\n"), 0o644)
}

// built reads an artifact built into s as a fixture.
func built(t *testing.T, s *artifact.Store, ref string) *fixture {
	t.Helper()
	ctx := context.Background()
	d, err := s.Resolve(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{blobs: map[digest.Digest][]byte{}}
	mb, _ := content.FetchAll(ctx, s.Storage(), d)
	json.Unmarshal(mb, &f.manifest)
	cb, _ := content.FetchAll(ctx, s.Storage(), f.manifest.Config)
	json.Unmarshal(cb, &f.config)
	for _, l := range f.manifest.Layers {
		b, err := content.FetchAll(ctx, s.Storage(), l)
		if err != nil {
			t.Fatal(err)
		}
		f.blobs[l.Digest] = b
	}
	return f
}

// scratchTree is the small artifact the invalid fixtures mutate.
var scratchTree = map[string]string{
	"K8sfile":           "FROM scratch\nARG replicas=1\nADD ./manifests as config\nMACHINES control-plane=1 worker=${replicas}\n",
	"manifests/cm.yaml": "kind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: conformance\n",
}

// TestConformanceFixtures checks every published fixture with Conform.
// With -update it rewrites them first: valid/hello from examples/hello,
// valid/scratch from a FROM scratch K8sfile, invalid/* by mutating
// valid/scratch (builds are reproducible, so the bytes are stable).
func TestConformanceFixtures(t *testing.T) {
	ctx := context.Background()
	if *update {
		s := newStore(t)
		mustBuild(t, s, helloDir(t), "hello:v1", nil)
		mustBuild(t, s, writeTree(t, scratchTree), "scratch:v1", nil)
		cases := []conformanceCase{
			{Name: "valid/hello", Valid: true, Why: "examples/hello: FROM k2/base, a manifests layer, a chart layer and an app layer"},
			{Name: "valid/scratch", Valid: true, Why: "FROM scratch: one manifests layer, an ARG and machine pools"},
		}
		built(t, s, "hello:v1").write(t, filepath.Join(conformanceDir, "valid/hello"))
		built(t, s, "scratch:v1").write(t, filepath.Join(conformanceDir, "valid/scratch"))
		for _, m := range mutations {
			f := built(t, s, "scratch:v1")
			m.mutate(f)
			f.write(t, filepath.Join(conformanceDir, m.Name))
			cases = append(cases, m.conformanceCase)
		}
		b, _ := json.MarshalIndent(cases, "", "  ")
		if err := os.WriteFile(filepath.Join(conformanceDir, "cases.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(conformanceDir, "cases.json"))
	if err != nil {
		t.Fatalf("%v (run go test ./artifact -run ConformanceFixtures -update)", err)
	}
	var cases []conformanceCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2+len(mutations) {
		t.Fatalf("cases.json has %d cases, want %d (run with -update)", len(cases), 2+len(mutations))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			st, err := oci.NewFromFS(ctx, os.DirFS(filepath.Join(conformanceDir, c.Name)))
			if err != nil {
				t.Fatal(err)
			}
			d, err := st.Resolve(ctx, "artifact")
			if err != nil {
				t.Fatal(err)
			}
			err = artifact.Conform(ctx, st, d)
			switch {
			case c.Valid && err != nil:
				t.Fatalf("valid fixture refused: %v", err)
			case !c.Valid && err == nil:
				t.Fatalf("invalid fixture (%s) accepted", c.Why)
			case !c.Valid && (!errors.Is(err, artifact.ErrNonConformant) || !strings.Contains(err.Error(), c.Error)):
				t.Fatalf("error %q does not say %q", err, c.Error)
			}
			if err != nil {
				t.Log(err)
			}
		})
	}
}

// TestBuiltArtifactsConform builds every kind of artifact k2 makes — the
// examples, the check fixture, FROM a base in the store, vendored images —
// and checks each with Conform (config against the JSON Schema, manifest
// and layers). Build itself refuses a config its schema rejects, so every
// other build test checks the schema too.
func TestBuiltArtifactsConform(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	host := registrytest.New(t)
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = withPlatform(t, img)
	imagetest.Push(t, img, host+"/test/tiny:1")
	examples, _ := filepath.Abs("../examples")
	for _, c := range []struct {
		ref, dir string
		vendor   bool
	}{
		{"hello:v1", filepath.Join(examples, "hello"), false},
		{"web:v1", filepath.Join(examples, "web"), false},
		{"check-ok:v1", "testdata/check/ok", false},
		{"scratch:v1", writeTree(t, scratchTree), false},
		{"child:v1", writeTree(t, map[string]string{"K8sfile": "FROM scratch:v1\nARG replicas=3\nLABEL team=k2\n"}), false},
		{"vendored:v1", writeTree(t, map[string]string{"K8sfile": "FROM scratch\nAPP tiny image=" + host + "/test/tiny:1 port=80\n"}), true},
	} {
		t.Run(c.ref, func(t *testing.T) {
			res := mustBuild(t, s, c.dir, c.ref, func(o *artifact.BuildOptions) { o.VendorImages = c.vendor })
			if err := artifact.Conform(ctx, s.Storage(), res.Manifest); err != nil {
				t.Fatalf("%s does not conform: %v", c.ref, err)
			}
		})
	}
}
