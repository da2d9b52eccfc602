package e2e

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/ociarchive"
)

// TestDeployVendoredImagesAirgap: an artifact built with --vendor-images
// from a registry on 127.0.0.1 is deployed with --provider local after the
// registry is gone. The images step uploads the archive to the control
// plane; a worker's node certificate (what its agent got at join) lists
// and fetches it with the digest k2 inspect shows; deploying again uploads
// nothing. The machines share the host network and simulate pods: this
// test is about carrying the images, not running them.
func TestDeployVendoredImagesAirgap(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/e2e/web:1"
	img := imagetest.HTTPServerImage(t)
	imagetest.Push(t, img, ref)
	pushed, _ := img.Digest()

	home := t.TempDir()
	dir := writeFiles(t, map[string]string{
		"K8sfile": "FROM scratch\nAPP web image=" + ref + " port=8080\nMACHINES control-plane=1 worker=1\n",
	})
	mustK2(t, home, "build", "--vendor-images", "-t", "airgap:v1", dir)
	var inspected struct {
		Images []struct {
			Ref, Archive string
			Vendored     bool
		}
	}
	if err := json.Unmarshal([]byte(mustK2(t, home, "inspect", "-o", "json", "airgap:v1").Stdout), &inspected); err != nil {
		t.Fatal(err)
	}
	if len(inspected.Images) != 1 || !inspected.Images[0].Vendored {
		t.Fatalf("inspect images: %+v", inspected.Images)
	}
	archiveDigest := inspected.Images[0].Archive
	reg.Close() // airgap from here on

	// Host network, simulated pods: fast and independent of what this host
	// can run; real pods from vendored images are TestRealPods*' business.
	cfg := filepath.Join(t.TempDir(), "local.yaml")
	if err := os.WriteFile(cfg, []byte("network: host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustK2(t, home, "env", "create", "airgap", "--provider", "local", "--provider-config", cfg)
	t.Cleanup(func() { k2(t, home, "destroy", "airgap", "--yes") })
	r := mustK2(t, home, "deploy", "airgap:v1", "--env", "airgap")
	if !strings.Contains(r.Stderr, "1 of 1 vendored images uploaded") {
		t.Errorf("deploy output lacks the upload:\n%s", r.Stderr)
	}

	// The worker's credentials, as its agent reads them.
	caPEM, cert, err := join.LoadNodeCredentials(filepath.Join(home, "local", "machines", "airgap-worker-0", "data"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct{ JoinPort int }
	b, err := os.ReadFile(filepath.Join(home, "clusters", "airgap", "cluster.json"))
	if err != nil || json.Unmarshal(b, &id) != nil {
		t.Fatalf("reading the cluster identity: %v", err)
	}
	// The join endpoint is on the API server's host.
	kc, err := clientcmd.LoadFromFile(filepath.Join(home, "clusters", "airgap", "admin.kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	api, err := url.Parse(kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster].Server)
	if err != nil {
		t.Fatal(err)
	}
	joinURL := "https://" + net.JoinHostPort(api.Hostname(), strconv.Itoa(id.JoinPort))
	ctx := context.Background()
	ims, err := join.ListImages(ctx, joinURL, caPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || ims[0].Ref != ref || ims[0].Digest != archiveDigest {
		t.Fatalf("control plane lists %+v, want %s with archive %s", ims, ref, archiveDigest)
	}
	rc, err := join.FetchImage(ctx, joinURL, caPEM, cert, ims[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ociarchive.List(rc)
	if err == nil {
		_, err = io.Copy(io.Discard, rc) // to the end, which checks the digest
	}
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Ref != ref || entries[0].Digest != pushed {
		t.Errorf("served archive names %+v, want %s %s", entries, ref, pushed)
	}

	r = mustK2(t, home, "deploy", "airgap:v1", "--env", "airgap")
	if !strings.Contains(r.Stderr, "0 of 1 vendored images uploaded, 1 already there") {
		t.Errorf("second deploy output:\n%s", r.Stderr)
	}
	mustK2(t, home, "destroy", "airgap", "--yes")
}
