package e2e

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/imagetest"
	"k2.dev/k2/internal/testutil"
)

// TestBuildVendorImages: an image built by the test is pushed to Debian's
// docker-registry; k2 build --vendor-images stores it in the artifact;
// inspect lists it as vendored; the archive layer, taken out of a k2 save
// tarball, is an OCI archive skopeo reads with the pushed digest. An image
// that cannot be pulled fails the build with exit 5, naming the image and
// the K8sfile line.
func TestBuildVendorImages(t *testing.T) {
	host := startDockerRegistry(t)
	img := imagetest.HTTPServerImage(t)
	ref := host + "/test/web:1"
	imagetest.Push(t, img, ref)
	pushed, _ := img.Digest()

	dir := writeFiles(t, map[string]string{
		"K8sfile": "FROM scratch\nAPP web image=" + ref + " port=8080\nADD pod.yaml\n",
		"pod.yaml": "kind: Pod\nmetadata: {name: client}\nspec:\n  containers:\n  - name: c\n    image: " + ref +
			"\n    command: [/httpserver]\n",
	})
	home := t.TempDir()
	start := time.Now()
	r := mustK2(t, home, "build", "--vendor-images", "-o", "json", "-t", "vend:v1", dir)
	t.Logf("k2 build --vendor-images (1 image): %s", time.Since(start).Round(time.Millisecond))
	var built struct {
		Digest           string
		Images, Vendored int
	}
	if err := json.Unmarshal([]byte(r.Stdout), &built); err != nil || built.Images != 1 || built.Vendored != 1 {
		t.Fatalf("build output %q: %v", r.Stdout, err)
	}

	r = mustK2(t, home, "inspect", "-o", "json", "vend:v1")
	var s struct {
		Images []struct {
			Ref, Digest, Archive string
			Vendored             bool
			Size                 int64
			Sources              []string
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Images) != 1 || s.Images[0].Ref != ref || !s.Images[0].Vendored || s.Images[0].Digest != pushed.String() ||
		strings.Join(s.Images[0].Sources, ",") != "APP web,pod.yaml: Pod client" {
		t.Fatalf("inspect images: %+v", s.Images)
	}
	text := mustK2(t, home, "inspect", "vend:v1").Stdout
	if !strings.Contains(text, "Images:") || !strings.Contains(text, ref) {
		t.Errorf("inspect text lacks the image:\n%s", text)
	}

	// The same inputs give the same artifact.
	r = mustK2(t, t.TempDir(), "build", "--vendor-images", "-o", "json", "-t", "vend:v1", dir)
	var again struct{ Digest string }
	json.Unmarshal([]byte(r.Stdout), &again)
	if again.Digest != built.Digest {
		t.Errorf("rebuild gave %s, first build %s", again.Digest, built.Digest)
	}

	// The archive layer, out of a k2 save tarball, read by skopeo.
	saved := filepath.Join(t.TempDir(), "vend.tar")
	mustK2(t, home, "save", "vend:v1", "-o", saved)
	archive := filepath.Join(t.TempDir(), "web.tar")
	extractBlob(t, saved, s.Images[0].Archive, archive)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("skopeo not on PATH; skipping its check of the image archive")
	} else {
		out, err := exec.Command("skopeo", "inspect", "oci-archive:"+archive).CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, out)
		}
		var info struct{ Digest string }
		json.Unmarshal(out, &info)
		if info.Digest != pushed.String() {
			t.Errorf("skopeo sees %s, pushed %s\n%s", info.Digest, pushed, out)
		}
	}

	// An image nobody serves: exit 5, naming the image and where it is used.
	gone := fmt.Sprintf("127.0.0.1:%d/test/gone:1", testutil.FreePort(t))
	bad := writeFiles(t, map[string]string{"K8sfile": "FROM scratch\nAPP web image=" + gone + "\n"})
	r = k2(t, t.TempDir(), "build", "--vendor-images", "-t", "bad:v1", bad)
	if r.Code != 5 || !strings.Contains(r.Stderr, "K8sfile:2:1: APP: image "+gone+" (APP web): pulling") {
		t.Errorf("unpullable image: exit %d\n%s", r.Code, r.Stderr)
	}
}

// extractBlob copies blobs/sha256/<hex of digest> out of an OCI layout tar.
func extractBlob(t *testing.T, tarPath, digest, dst string) {
	t.Helper()
	f, err := os.Open(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:")
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s: %v", want, tarPath, err)
		}
		if strings.TrimPrefix(hdr.Name, "./") != want {
			continue
		}
		out, err := os.Create(dst)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, tr); err != nil {
			t.Fatal(err)
		}
		out.Close()
		return
	}
}
