package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startDockerRegistry runs Debian's docker-registry (the CNCF distribution
// registry) on a free loopback port with filesystem storage in a temp dir,
// and returns host:port. The process is stopped when the test ends.
func startDockerRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return startDockerRegistryAt(t, addr)
}

// startDockerRegistryAt is startDockerRegistry on addr (host:port).
func startDockerRegistryAt(t *testing.T, addr string) string {
	t.Helper()
	bin := "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("docker-registry not installed (apt-get install docker-registry)")
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			t.Fatalf("docker-registry did not start on %s: %v\n%s", addr, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// helloDir is examples/hello, relative to the e2e package.
func helloDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("../examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

type inspectOut struct {
	Ref      string `json:"ref"`
	Digest   string `json:"digest"`
	Layers   []struct{ Name, Kind string }
	Machines []struct{ Pool, Count string }
	Base     []struct{ Ref, Digest string }
}

func inspectJSON(t *testing.T, home, ref string) inspectOut {
	t.Helper()
	r := mustK2(t, home, "inspect", "-o", "json", ref)
	var out inspectOut
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("inspect -o json: %v\n%s", err, r.Stdout)
	}
	return out
}

// TestArtifactRegistryRoundTrip: build → push to a real registry process →
// delete the local store → pull → inspect shows the same digest; skopeo
// sees the manifest in the registry.
func TestArtifactRegistryRoundTrip(t *testing.T) {
	host := startDockerRegistry(t)
	home := t.TempDir()
	ref := host + "/e2e/hello:v1"

	r := mustK2(t, home, "build", "-o", "json", "-t", ref, helloDir(t))
	var built struct{ Ref, Digest string }
	if err := json.Unmarshal([]byte(r.Stdout), &built); err != nil || !strings.HasPrefix(built.Digest, "sha256:") {
		t.Fatalf("build -o json: %v\n%s", err, r.Stdout)
	}

	// Rebuilding in another home gives the same digest.
	if r2 := mustK2(t, t.TempDir(), "build", "-o", "json", "-t", "again:v1", helloDir(t)); !strings.Contains(r2.Stdout, built.Digest) {
		t.Errorf("rebuild differs: %s vs %s", r2.Stdout, built.Digest)
	}

	r = mustK2(t, home, "push", ref)
	if want := host + "/e2e/hello@" + built.Digest; strings.TrimSpace(r.Stdout) != want {
		t.Fatalf("push printed %q, want %q", r.Stdout, want)
	}

	if err := os.RemoveAll(filepath.Join(home, "store")); err != nil {
		t.Fatal(err)
	}
	if r := k2(t, home, "inspect", "hello:nope"); r.Code == 0 {
		t.Fatal("inspect of a missing artifact succeeded")
	}

	mustK2(t, home, "pull", ref)
	got := inspectJSON(t, home, ref)
	if got.Digest != built.Digest {
		t.Fatalf("pulled digest %s, built %s", got.Digest, built.Digest)
	}
	if len(got.Layers) != 4 || len(got.Base) != 1 || got.Base[0].Ref != "k2/base:v1.37" {
		t.Errorf("inspect: %+v", got)
	}
	images := mustK2(t, home, "images")
	if !strings.Contains(images.Stdout, ref) {
		t.Errorf("images does not list %s:\n%s", ref, images.Stdout)
	}

	// Pull by digest into a fresh home.
	pinned := host + "/e2e/hello@" + built.Digest
	home2 := t.TempDir()
	mustK2(t, home2, "pull", pinned)
	if d := inspectJSON(t, home2, pinned).Digest; d != built.Digest {
		t.Errorf("pull by digest: %s", d)
	}

	// skopeo reads the manifest from the registry (and k2's local store, an OCI layout).
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	out, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var m struct {
		ArtifactType string `json:"artifactType"`
		Layers       []struct{ MediaType string }
	}
	if err := json.Unmarshal(out, &m); err != nil || m.ArtifactType != "application/vnd.k2.cluster.v1" || len(m.Layers) != 4 {
		t.Errorf("skopeo sees %s (%v)", out, err)
	}
	out, err = exec.Command("skopeo", "inspect", "--raw", "oci:"+filepath.Join(home, "store")+":"+ref).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "application/vnd.k2.cluster.v1") {
		t.Errorf("skopeo on the local store: %v\n%s", err, out)
	}
}

// TestArtifactSaveLoad: save → load round trip into a fresh K2_HOME, and
// the tarball is readable by skopeo as an OCI archive.
func TestArtifactSaveLoad(t *testing.T) {
	home := t.TempDir()
	r := mustK2(t, home, "build", "-o", "json", "-t", "hello:v1", helloDir(t))
	var built struct{ Digest string }
	json.Unmarshal([]byte(r.Stdout), &built)

	tarPath := filepath.Join(t.TempDir(), "hello.tar")
	mustK2(t, home, "save", "hello:v1", "-o", tarPath)

	fresh := t.TempDir()
	r = mustK2(t, fresh, "load", tarPath)
	if want := "hello:v1@" + built.Digest; strings.TrimSpace(r.Stdout) != want {
		t.Fatalf("load printed %q, want %q", r.Stdout, want)
	}
	if d := inspectJSON(t, fresh, "hello:v1").Digest; d != built.Digest {
		t.Fatalf("loaded digest %s, built %s", d, built.Digest)
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "--raw", "oci-archive:"+tarPath+":hello:v1").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "application/vnd.k2.cluster.v1") {
			t.Errorf("skopeo on the saved tarball: %v\n%s", err, out)
		}
	}
}

// TestArtifactExitCodes: invalid K8sfile → 3; registry unreachable → 5;
// usage → 2.
func TestArtifactExitCodes(t *testing.T) {
	home := t.TempDir()
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "K8sfile"), []byte("FROM scratch\nBOGUS thing\nADD\n"), 0o644)
	if r := k2(t, home, "build", "-t", "bad:v1", bad); r.Code != 3 || !strings.Contains(r.Stderr, "K8sfile:2:1") {
		t.Errorf("invalid K8sfile: exit %d, stderr %s", r.Code, r.Stderr)
	}
	beta := t.TempDir()
	os.MkdirAll(filepath.Join(beta, "m"), 0o755)
	os.WriteFile(filepath.Join(beta, "K8sfile"), []byte("FROM scratch\nADD ./m\n"), 0o644)
	os.WriteFile(filepath.Join(beta, "m", "cj.yaml"), []byte("apiVersion: batch/v1beta1\nkind: CronJob\nmetadata:\n  name: nightly\n"), 0o644)
	if r := k2(t, home, "build", "-t", "beta:v1", beta); r.Code != 3 || !strings.Contains(r.Stderr, "CronJob nightly") {
		t.Errorf("beta manifest: exit %d, stderr %s", r.Code, r.Stderr)
	}
	mustK2(t, home, "build", "--allow-beta", "-t", "beta:v1", beta)
	if r := k2(t, home, "pull", "127.0.0.1:1/nothing:v1"); r.Code != 5 {
		t.Errorf("unreachable registry: exit %d, stderr %s", r.Code, r.Stderr)
	}
	if r := k2(t, home, "build", beta); r.Code != 2 {
		t.Errorf("build without -t: exit %d, stderr %s", r.Code, r.Stderr)
	}
}

// chartTgz packs a Helm chart archive (files under name/) by hand.
func chartTgz(t *testing.T, name, version string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	files["Chart.yaml"] = "apiVersion: v2\nname: " + name + "\nversion: " + version + "\n"
	for n, d := range files {
		tw.WriteHeader(&tar.Header{Name: name + "/" + n, Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg})
		tw.Write([]byte(d))
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// TestArtifactRepoInstall: k2 repo add → a K8sfile with INSTALL
// helm/<alias>/<chart> vendors the chart from a loopback chart repository;
// k2 inspect lists it; repo remove makes the alias unknown (exit 3).
func TestArtifactRepoInstall(t *testing.T) {
	tgz := chartTgz(t, "cache", "1.4.0", map[string]string{
		"values.yaml":        "replicas: 1\n",
		"templates/sts.yaml": "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  replicas: {{ .Values.replicas }}\n",
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/index.yaml", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "apiVersion: v1\nentries:\n  cache:\n  - name: cache\n    version: 1.4.0\n    apiVersion: v2\n    urls: [cache-1.4.0.tgz]\n")
	})
	mux.HandleFunc("/cache-1.4.0.tgz", func(w http.ResponseWriter, r *http.Request) { w.Write(tgz) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	home := t.TempDir()
	mustK2(t, home, "repo", "add", "local", srv.URL)
	if r := mustK2(t, home, "repo", "ls", "-o", "json"); !strings.Contains(r.Stdout, srv.URL) {
		t.Fatalf("repo ls: %s", r.Stdout)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "K8sfile"), []byte("FROM k2/base:v1.37\nINSTALL helm/local/cache namespace=data set replicas=3\n"), 0o644)
	mustK2(t, home, "build", "-t", "cache:v1", dir)
	r := mustK2(t, home, "inspect", "cache:v1")
	for _, want := range []string{"cache  cache  1.4.0    cache    data", "StatefulSet"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("inspect lacks %q:\n%s", want, r.Stdout)
		}
	}
	mustK2(t, home, "repo", "remove", "local")
	if r := k2(t, home, "build", "-t", "cache:v2", dir); r.Code != 3 || !strings.Contains(r.Stderr, "k2 repo add local") {
		t.Errorf("unknown alias: exit %d, %s", r.Code, r.Stderr)
	}
}

// TestArtifactRegistryServe: k2 registry serve prints its address, serves
// push and pull, and exits 0 on SIGINT.
func TestArtifactRegistryServe(t *testing.T) {
	home := t.TempDir()
	reg := startK2Registry(t, home)
	ref := reg.Addr + "/served/hello:v1"
	mustK2(t, home, "build", "-q", "-t", ref, helloDir(t))
	pinned := strings.TrimSpace(mustK2(t, home, "push", "-q", ref).Stdout)
	mustK2(t, t.TempDir(), "pull", "-q", pinned)

	done := make(chan error, 1)
	go func() { done <- reg.Stop(os.Interrupt) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("registry serve after SIGINT: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("registry serve did not stop on SIGINT")
	}
}
