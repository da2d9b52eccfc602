package artifact_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/registrytest"
)

// benchChart is a chart of n templates, a typical small service chart.
func benchChart(b *testing.B, name string, n int) []byte {
	files := map[string]string{"values.yaml": "replicas: 2\nimage: nginx:1.27\nport: 80\n"}
	for i := range n {
		files[fmt.Sprintf("templates/deploy-%d.yaml", i)] = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-` + fmt.Sprint(i) + `
  labels: {app: {{ .Chart.Name | quote }}, release: {{ .Release.Name | quote }}}
spec:
  replicas: {{ .Values.replicas }}
  selector: {matchLabels: {app: {{ .Chart.Name | quote }}}}
  template:
    metadata: {labels: {app: {{ .Chart.Name | quote }}}}
    spec:
      containers:
        - name: main
          image: {{ .Values.image }}
          ports: [{containerPort: {{ .Values.port }}}]
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-` + fmt.Sprint(i) + `
spec:
  selector: {app: {{ .Chart.Name | quote }}}
  ports: [{port: {{ .Values.port }}}]
`
	}
	return packChart(b, name, "1.0.0", files)
}

// BenchmarkBuildThreeCharts builds a K8sfile that vendors three charts (two
// from an HTTP chart repository, one from an OCI registry, all on loopback)
// on top of the built-in base, with a warm store. Target: ≤ 1 s per build.
func BenchmarkBuildThreeCharts(b *testing.B) {
	repoURL := serveChartRepo(b, benchChart(b, "api", 10), benchChart(b, "worker", 10))
	host := registrytest.New(b)
	oci := pushOCIChart(b, host, benchChart(b, "frontend", 10))
	dir := writeTree(b, map[string]string{
		"K8sfile": `FROM k2/base:v1.37
ARG replicas=3
INSTALL ` + repoURL + `#api set replicas=${replicas}
INSTALL ` + repoURL + `#worker namespace=jobs
INSTALL ` + oci + ` version=1.0.0
APP web image=nginx:1.27 port=80
`,
	})
	s := newStore(b)
	first := mustBuild(b, s, dir, "bench:v1", nil) // warm: base generated, blobs stored
	b.ResetTimer()
	for b.Loop() {
		res := mustBuild(b, s, dir, "bench:v1", nil)
		if res.Digest != first.Digest {
			b.Fatalf("digest changed between builds: %s vs %s", res.Digest, first.Digest)
		}
	}
}

// BenchmarkPushPull100MB pushes and pulls an artifact with one 100 MB layer
// to and from a registry over loopback, and copies the same blob file on
// disk, in the same run. It reports MB/s of each and push/pull as a
// percentage of the file copy. Target: ≥ 50 %. Registries:
// go-containerregistry's, in-process with blobs on disk, and Debian's
// docker-registry (the distribution registry) as a separate process when
// installed. As a floor it also reports a plain HTTP GET of the blob into
// io.Discard from the same registry (http-get-MB/s): a pull adds hashing
// and writing the file to that; and sha256 of the blob from memory
// (sha256-MB/s), which bounds any transfer that verifies digests.
func BenchmarkPushPull100MB(b *testing.B) {
	const size = 100 << 20
	layer := make([]byte, size)
	if _, err := rand.Read(layer); err != nil {
		b.Fatal(err)
	}
	src := newStore(b)
	ref := tagBigArtifact(b, src, layer)
	b.Run("ggcr", func(b *testing.B) {
		benchPushPull(b, src, ref, size, func(i int) string { return registrytest.NewDisk(b) + "/bench/big:v1" })
	})
	b.Run("docker-registry", func(b *testing.B) {
		host := startDockerRegistry(b)
		// A new repository each time; the distribution registry does not
		// mount blobs across repositories unless asked, so they transfer.
		benchPushPull(b, src, ref, size, func(i int) string { return fmt.Sprintf("%s/bench/big%d:v1", host, i) })
	})
}

func benchPushPull(b *testing.B, src *artifact.Store, ref bigRef, size int, target func(i int) string) {
	ctx := context.Background()
	var copyD, pushD, pullD, getD, hashD time.Duration
	i := 0
	for b.Loop() {
		i++
		// Plain file copy of the blob, from the store to another file.
		blob := filepath.Join(src.Dir(), "blobs", "sha256", ref.layer[len("sha256:"):])
		dst := filepath.Join(b.TempDir(), "copy")
		t0 := time.Now()
		if err := copyFile(blob, dst); err != nil {
			b.Fatal(err)
		}
		copyD += time.Since(t0)

		// Verifying a blob means hashing it: sha256 of the same bytes from
		// memory bounds any verified transfer.
		data, err := os.ReadFile(blob)
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		sha256.Sum256(data)
		hashD += time.Since(t0)

		r := target(i)
		if err := src.Tag(ctx, ref.desc, r); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if _, _, err := artifact.Push(ctx, src, r, artifact.RemoteOptions{}); err != nil {
			b.Fatal(err)
		}
		pushD += time.Since(t0)

		dstStore := newStore(b)
		t0 = time.Now()
		if _, err := artifact.Pull(ctx, dstStore, r, artifact.RemoteOptions{}); err != nil {
			b.Fatal(err)
		}
		pullD += time.Since(t0)

		// The transport alone: the same blob fetched with a plain HTTP GET
		// into io.Discard (no hashing, no file), k2's floor for a pull.
		repo, _, _ := strings.Cut(strings.TrimPrefix(r, hostOf(r)+"/"), ":")
		t0 = time.Now()
		resp, err := http.Get("http://" + hostOf(r) + "/v2/" + repo + "/blobs/" + ref.layer)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		getD += time.Since(t0)
	}
	n := float64(b.N)
	mbps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / (d.Seconds() / n) }
	b.ReportMetric(mbps(copyD), "copy-MB/s")
	b.ReportMetric(mbps(pushD), "push-MB/s")
	b.ReportMetric(mbps(pullD), "pull-MB/s")
	b.ReportMetric(100*mbps(pushD)/mbps(copyD), "push-%-of-copy")
	b.ReportMetric(100*mbps(pullD)/mbps(copyD), "pull-%-of-copy")
	b.ReportMetric(mbps(getD), "http-get-MB/s")
	b.ReportMetric(mbps(hashD), "sha256-MB/s")
	b.ReportMetric(100*mbps(pullD)/mbps(getD), "pull-%-of-http-get")
}

func hostOf(ref string) string { h, _, _ := strings.Cut(ref, "/"); return h }

// startDockerRegistry runs /usr/bin/docker-registry on a free loopback port
// with filesystem storage in a temp dir and returns host:port; it skips
// when the registry is not installed.
func startDockerRegistry(b *testing.B) string {
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		b.Skip("docker-registry not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := b.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "+
		filepath.Join(dir, "data")+"\nhttp:\n  addr: "+addr+"\n"), 0o644)
	cmd := exec.Command(bin, "serve", cfg)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for range 100 {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("docker-registry did not start on %s", addr)
	return ""
}

type bigRef struct {
	desc  ocispec.Descriptor
	layer string
}

// tagBigArtifact stores a k2 artifact whose only layer is data.
func tagBigArtifact(b *testing.B, s *artifact.Store, data []byte) bigRef {
	ctx := context.Background()
	st := s.Storage()
	ld := content.NewDescriptorFromBytes(artifact.ManifestsMediaType, data)
	if err := st.Push(ctx, ld, bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	cfg, _ := json.Marshal(artifact.Config{Version: artifact.ConfigVersion, Layers: []artifact.LayerSpec{{
		Name: "big", Kind: artifact.KindManifests, MediaType: ld.MediaType, Digest: ld.Digest.String(), Size: ld.Size, Objects: []artifact.Object{}}}})
	cd := content.NewDescriptorFromBytes(artifact.ConfigMediaType, cfg)
	if err := st.Push(ctx, cd, bytes.NewReader(cfg)); err != nil {
		b.Fatal(err)
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: artifact.ArtifactType, Config: cd, Layers: []ocispec.Descriptor{ld}})
	md := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, m)
	if err := st.Push(ctx, md, bytes.NewReader(m)); err != nil {
		b.Fatal(err)
	}
	return bigRef{desc: md, layer: ld.Digest.String()}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
