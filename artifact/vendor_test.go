package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/ociarchive"
	"k2.dev/k2/internal/registrytest"
	"k2.dev/k2/internal/usererr"
)

// vendorTree is a build context with an APP using one image (through an
// ARG with a default) and a manifest Deployment using another (and, as an
// initContainer, the first one again).
func vendorTree(t *testing.T, host string) string {
	return writeTree(t, map[string]string{
		"K8sfile": `FROM scratch
ARG registry=` + host + `
APP web image=${registry}/test/web:1 port=8080
ADD manifests
`,
		"manifests/worker.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: worker
spec:
  template:
    spec:
      initContainers:
      - name: init
        image: ` + host + `/test/web:1
      containers:
      - name: worker
        image: ` + host + `/test/worker:2
---
kind: ConfigMap
metadata:
  name: not-a-workload
data:
  image: ignored:1
`,
	})
}

func TestBuildVendorImages(t *testing.T) {
	ctx := context.Background()
	host := registrytest.New(t)
	web := imagetest.HTTPServerImage(t)
	worker, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	imagetest.Push(t, web, host+"/test/web:1")
	// random images have no platform; give the worker one.
	worker = withPlatform(t, worker)
	imagetest.Push(t, worker, host+"/test/worker:2")
	webDigest, _ := web.Digest()
	workerDigest, _ := worker.Digest()

	dir := vendorTree(t, host)
	s := newStore(t)
	start := time.Now()
	res := mustBuild(t, s, dir, "vendored:v1", func(o *artifact.BuildOptions) { o.VendorImages = true })
	t.Logf("build --vendor-images of 2 images: %s", time.Since(start).Round(time.Millisecond))

	a, err := artifact.Open(ctx, s, "vendored:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range a.Config.Images {
		got = append(got, im.Ref+" "+im.Digest+" "+strings.Join(im.Sources, ","))
	}
	want := []string{
		host + "/test/web:1 " + webDigest.String() + " APP web,manifests/worker.yaml: Deployment worker",
		host + "/test/worker:2 " + workerDigest.String() + " manifests/worker.yaml: Deployment worker",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	if n := len(a.VendoredImages()); n != 2 {
		t.Errorf("%d vendored images, want 2", n)
	}
	// Manifest: the 2 applied layers, then the 2 image layers.
	if len(a.Manifest.Layers) != 4 || a.Manifest.Layers[2].MediaType != artifact.ImageArchiveMediaType {
		t.Errorf("manifest layers: %+v", a.Manifest.Layers)
	}
	for _, c := range []struct {
		ref    string
		digest string
	}{{host + "/test/web:1", webDigest.String()}, {host + "/test/worker:2", workerDigest.String()}} {
		rc, err := a.ImageArchive(ctx, c.ref)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("reading archive of %s: %v", c.ref, err)
		}
		imgs, err := ociarchive.Read(bytes.NewReader(data), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if len(imgs) != 1 || imgs[0].Ref != c.ref {
			t.Fatalf("archive of %s holds %+v", c.ref, imgs)
		}
		if d, _ := imgs[0].Image.Digest(); d.String() != c.digest {
			t.Errorf("archive of %s: digest %s, pushed %s", c.ref, d, c.digest)
		}
		if c.ref == host+"/test/web:1" {
			t.Logf("web image archive: %d B", len(data))
		}
	}
	sum := a.Summarize()
	if len(sum.Images) != 2 || !sum.Images[0].Vendored || sum.Images[0].Size == 0 {
		t.Errorf("summary images: %+v", sum.Images)
	}

	// Reproducible: another store, same digest.
	res2 := mustBuild(t, newStore(t), dir, "vendored:v2", func(o *artifact.BuildOptions) { o.VendorImages = true })
	if res2.Digest != res.Digest {
		t.Errorf("two builds with --vendor-images: %s, %s", res.Digest, res2.Digest)
	}
	// Without --vendor-images the refs are still recorded, without digests.
	plain := mustBuild(t, newStore(t), dir, "plain:v1", nil)
	if n := len(plain.Config.Images); n != 2 || plain.Config.Images[0].Archive != nil || plain.Config.Images[0].Digest != "" {
		t.Errorf("plain build images: %+v", plain.Config.Images)
	}

	// A child artifact inherits the vendored images.
	child := writeTree(t, map[string]string{"K8sfile": "FROM vendored:v1\nLABEL x=y\n"})
	cres := mustBuild(t, s, child, "child:v1", nil)
	ca, err := artifact.Open(ctx, s, "child:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ca.VendoredImages()); n != 2 || ca.Config.Images[0].From != "vendored:v1" {
		t.Errorf("child %s images: %+v", cres.Digest, ca.Config.Images)
	}
	if rc, err := ca.ImageArchive(ctx, host+"/test/worker:2"); err != nil {
		t.Errorf("child archive: %v", err)
	} else {
		rc.Close()
	}
}

func TestNormalizeImageRef(t *testing.T) {
	for in, want := range map[string]string{
		"nginx:1.27":                  "docker.io/library/nginx:1.27",
		"nginx":                       "docker.io/library/nginx:latest",
		"team/app:2":                  "docker.io/team/app:2",
		"127.0.0.1:5000/web:1":        "127.0.0.1:5000/web:1",
		"registry.local/a/b/c":        "registry.local/a/b/c:latest",
		"docker.io/library/nginx:1.2": "docker.io/library/nginx:1.2",
	} {
		got, err := artifact.NormalizeImageRef(in)
		if err != nil || got != want {
			t.Errorf("NormalizeImageRef(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := artifact.NormalizeImageRef("nginx:bad tag"); err == nil {
		t.Error("want an error for an invalid reference")
	}
}

func TestVendorErrors(t *testing.T) {
	host := registrytest.New(t)
	tests := []struct {
		name, k8sfile string
		files         map[string]string
		want          []string
		kind          usererr.Kind
	}{{
		name:    "arg without default",
		k8sfile: "FROM scratch\nARG registry\nAPP web image=${registry}/web:1\n",
		want: []string{"K8sfile:3:1: APP: image ${registry}/web:1 uses ARG registry, which has no default",
			"(ARG registry=<value>)", "without --vendor-images"},
		kind: usererr.KindInvalid,
	}, {
		name:    "app image missing",
		k8sfile: "FROM scratch\nAPP web image=" + host + "/nothing/here:1\n",
		want:    []string{"K8sfile:2:1: APP: image " + host + "/nothing/here:1 (APP web): pulling", "not found"},
		kind:    usererr.KindRegistry,
	}, {
		name:    "manifest image unreachable",
		k8sfile: "FROM scratch\nADD deploy.yaml\n",
		files:   map[string]string{"deploy.yaml": "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: 127.0.0.1:1/gone:1\n"},
		want:    []string{"K8sfile:2:1: ADD: image 127.0.0.1:1/gone:1 (deploy.yaml: Pod p): pulling", "connection refused"},
		kind:    usererr.KindRegistry,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"K8sfile": tt.k8sfile}
			for k, v := range tt.files {
				files[k] = v
			}
			_, err := build(t, newStore(t), writeTree(t, files), "x:1", func(o *artifact.BuildOptions) { o.VendorImages = true })
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			var ue *usererr.Error
			if !errors.As(err, &ue) || ue.Kind != tt.kind {
				t.Errorf("error kind: %#v, want %v", ue, tt.kind)
			}
		})
	}
	// Without --vendor-images an ARG without default is no error.
	dir := writeTree(t, map[string]string{"K8sfile": "FROM scratch\nARG registry\nAPP web image=${registry}/web:1\n"})
	if _, err := build(t, newStore(t), dir, "x:1", nil); err != nil {
		t.Errorf("plain build: %v", err)
	}
}

// withPlatform sets linux/runtime.GOARCH in img's config.
func withPlatform(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// BenchmarkBuildVendorImages: k2 build --vendor-images of one APP whose
// image is the test HTTP server (~2.8 MB), from an in-process registry,
// into a fresh store each time.
func BenchmarkBuildVendorImages(b *testing.B) {
	host := registrytest.New(b)
	imagetest.Push(b, imagetest.HTTPServerImage(b), host+"/test/web:1")
	dir := writeTree(b, map[string]string{"K8sfile": "FROM scratch\nAPP web image=" + host + "/test/web:1\n"})
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := newStore(b)
		b.StartTimer()
		mustBuild(b, s, dir, "v:1", func(o *artifact.BuildOptions) { o.VendorImages = true })
	}
}

// TestImagesRecorded: without --vendor-images every workload kind's
// images are listed, from manifests, rendered charts and App objects.
func TestImagesRecorded(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"K8sfile":           "FROM scratch\nARG tag=3\nAPP web image=registry.local/web:${tag}\nADD chart\nADD more.yaml\n",
		"chart/Chart.yaml":  "apiVersion: v2\nname: db\nversion: 0.1.0\n",
		"chart/values.yaml": "image: registry.local/db:16\n",
		"chart/templates/sts.yaml": `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers:
      - {name: db, image: "{{ .Values.image }}"}
`,
		"more.yaml": `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: "busybox:1.37"}]
---
apiVersion: v1
kind: List
items:
- kind: Pod
  metadata: {name: p}
  spec:
    initContainers: [{name: i, image: "registry.local/web:3"}]
    containers: [{name: c, image: "alpine"}]
---
apiVersion: k2.dev/v1
kind: App
metadata: {name: api}
spec: {image: "registry.local/api:1"}
`,
	})
	res := mustBuild(t, newStore(t), dir, "x:1", nil)
	var got []string
	for _, im := range res.Config.Images {
		got = append(got, im.Ref+" <- "+strings.Join(im.Sources, "; "))
	}
	want := []string{
		"docker.io/library/alpine:latest <- more.yaml: Pod p",
		"docker.io/library/busybox:1.37 <- more.yaml: CronJob nightly",
		"registry.local/api:1 <- more.yaml: App api",
		"registry.local/db:16 <- chart db (db/templates/sts.yaml): StatefulSet db",
		"registry.local/web:3 <- APP web; more.yaml: Pod p",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
}
