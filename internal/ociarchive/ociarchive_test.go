package ociarchive_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"k2.dev/k2/internal/ociarchive"
)

func images(t *testing.T) []ociarchive.Named {
	t.Helper()
	bin, err := ociarchive.BinaryImage("hello", []byte("#!/bin/true\n"), "amd64")
	if err != nil {
		t.Fatal(err)
	}
	rnd, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return []ociarchive.Named{{Ref: "k2.dev/test/hello:1", Image: bin}, {Ref: "127.0.0.1:5000/random:v2", Image: rnd}}
}

func write(t *testing.T, imgs []ociarchive.Named) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := ociarchive.Write(&buf, imgs); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRoundTrip: an archive unpacked and read with go-containerregistry's
// layout package gives the same images, names and layers.
func TestRoundTrip(t *testing.T) {
	imgs := images(t)
	archive := write(t, imgs)
	dir := t.TempDir()
	got, err := ociarchive.Read(bytes.NewReader(archive), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(imgs) {
		t.Fatalf("read %d images, wrote %d", len(got), len(imgs))
	}
	for i := range imgs {
		if got[i].Ref != imgs[i].Ref || digest(t, got[i].Image) != digest(t, imgs[i].Image) {
			t.Errorf("image %d: got %s %s, want %s %s", i, got[i].Ref, digest(t, got[i].Image), imgs[i].Ref, digest(t, imgs[i].Image))
		}
		wl, _ := imgs[i].Image.Layers()
		gl, err := got[i].Image.Layers()
		if err != nil || len(gl) != len(wl) {
			t.Fatalf("layers: %v, %d want %d", err, len(gl), len(wl))
		}
		for j := range wl {
			wd, _ := wl[j].Digest()
			gd, _ := gl[j].Digest()
			if wd != gd {
				t.Errorf("image %d layer %d: %s, want %s", i, j, gd, wd)
			}
		}
	}
	// The layout package validates what it reads; check the index's
	// annotations as containerd and skopeo see them.
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := p.ImageIndex()
	im, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range im.Manifests {
		want := map[string]string{ociarchive.AnnotationRefName: imgs[i].Ref, ociarchive.AnnotationImageName: imgs[i].Ref}
		if diff := cmp.Diff(want, d.Annotations); diff != "" {
			t.Errorf("annotations of %s (-want +got):\n%s", imgs[i].Ref, diff)
		}
	}
	entries, err := ociarchive.List(bytes.NewReader(archive))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Ref != imgs[i].Ref || e.Digest != digest(t, imgs[i].Image) {
			t.Errorf("List entry %d = %+v", i, e)
		}
	}
}

// TestDeterministic: the same images give the same bytes.
func TestDeterministic(t *testing.T) {
	imgs := images(t)
	a, b := write(t, imgs), write(t, imgs)
	if !bytes.Equal(a, b) {
		t.Error("two archives of the same images differ")
	}
	bin1, _ := ociarchive.BinaryImage("x", []byte("abc"), "amd64")
	bin2, _ := ociarchive.BinaryImage("x", []byte("abc"), "amd64")
	if digest(t, bin1) != digest(t, bin2) {
		t.Error("BinaryImage is not deterministic")
	}
}

func TestWriteErrors(t *testing.T) {
	imgs := images(t)
	for name, in := range map[string][]ociarchive.Named{
		"no ref":    {{Image: imgs[0].Image}},
		"duplicate": {imgs[0], imgs[0]},
	} {
		if err := ociarchive.Write(&bytes.Buffer{}, in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := ociarchive.List(strings.NewReader("")); err == nil {
		t.Error("List of an empty stream: no error")
	}
}

// TestSkopeoInspect: skopeo, which shares containers/image with
// CRI-O and podman, reads the archive.
func TestSkopeoInspect(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not on PATH; install it (apt-get install skopeo) to run this test")
	}
	imgs := images(t)[:1]
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, write(t, imgs), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(skopeo, "inspect", "--raw", "oci-archive:"+p).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	want, _ := imgs[0].Image.RawManifest()
	if !bytes.Equal(bytes.TrimSpace(out), want) {
		t.Errorf("skopeo read manifest\n%s\nwant\n%s", out, want)
	}
	out, err = exec.Command(skopeo, "inspect", "oci-archive:"+p).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var info struct {
		Digest       string
		Architecture string
		Os           string
		Layers       []string
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if info.Digest != digest(t, imgs[0].Image).String() || info.Os != "linux" || info.Architecture != "amd64" || len(info.Layers) != 1 {
		t.Errorf("skopeo inspect = %+v", info)
	}
}
