package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/registrytest"
	"k2.dev/k2/internal/usererr"
)

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	host := registrytest.New(t)
	ref := host + "/demo/hello:v1"
	src := newStore(t)
	built := mustBuild(t, src, helloDir(t), ref, nil)

	pinned, d, err := artifact.Push(ctx, src, ref, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := host + "/demo/hello@" + built.Digest; pinned != want || d.Digest.String() != built.Digest {
		t.Fatalf("push = %s (%s), want %s", pinned, d.Digest, want)
	}

	// Pull into an empty store, by tag and by digest.
	dst := newStore(t)
	for _, r := range []string{ref, pinned} {
		d, err := artifact.Pull(ctx, dst, r, artifact.RemoteOptions{})
		if err != nil {
			t.Fatalf("pull %s: %v", r, err)
		}
		if d.Digest.String() != built.Digest {
			t.Fatalf("pulled %s = %s, want %s", r, d.Digest, built.Digest)
		}
	}
	a, err := artifact.Open(ctx, dst, ref, false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files(ctx, "hello-manifests")
	if err != nil || len(files) != 2 || files[0].Name != "configmap.yaml" {
		t.Fatalf("files = %v, %v", files, err)
	}
	// Remote open reads the same artifact without storing it.
	ra, err := artifact.OpenRemote(ctx, ref, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ra.Descriptor.Digest.String() != built.Digest || len(ra.Config.Layers) != 4 {
		t.Fatalf("remote open: %s, %d layers", ra.Descriptor.Digest, len(ra.Config.Layers))
	}
	// Open with pull fetches what the store lacks.
	third := newStore(t)
	if _, err := artifact.Open(ctx, third, ref, true, artifact.RemoteOptions{}); err != nil {
		t.Fatalf("open with pull: %v", err)
	}
}

func TestPullMissingIsRegistryError(t *testing.T) {
	host := registrytest.New(t)
	_, err := artifact.Pull(context.Background(), newStore(t), host+"/nope:v1", artifact.RemoteOptions{})
	var ue *usererr.Error
	if !errors.As(err, &ue) || ue.Kind != usererr.KindRegistry {
		t.Fatalf("err = %v, want a registry error", err)
	}
	// A registry that is not there.
	_, err = artifact.Pull(context.Background(), newStore(t), "127.0.0.1:1/nope:v1", artifact.RemoteOptions{})
	if !errors.As(err, &ue) || ue.Kind != usererr.KindRegistry {
		t.Fatalf("err = %v, want a registry error", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	built := mustBuild(t, src, helloDir(t), "hello:v1", nil)
	var buf bytes.Buffer
	if err := artifact.Save(ctx, src, []string{"hello:v1"}, &buf); err != nil {
		t.Fatal(err)
	}
	// Saving twice gives the same bytes.
	var buf2 bytes.Buffer
	if err := artifact.Save(ctx, src, []string{"hello:v1"}, &buf2); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), buf2.Bytes()) {
		t.Error("two saves differ")
	}
	tarPath := filepath.Join(t.TempDir(), "hello.tar")
	if err := os.WriteFile(tarPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := newStore(t)
	refs, err := artifact.Load(ctx, dst, tarPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0] != "hello:v1" {
		t.Fatalf("loaded %v", refs)
	}
	a, err := artifact.Open(ctx, dst, "hello:v1", false, artifact.RemoteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Descriptor.Digest.String() != built.Digest {
		t.Fatalf("loaded %s, built %s", a.Descriptor.Digest, built.Digest)
	}
	// Every layer is readable after the round trip.
	for _, l := range a.Config.Layers {
		if _, err := a.LayerBlob(ctx, l.Name); err != nil {
			t.Errorf("layer %s: %v", l.Name, err)
		}
	}
	if _, err := artifact.Load(ctx, dst, filepath.Join(t.TempDir(), "missing.tar")); err == nil ||
		!strings.Contains(err.Error(), "missing.tar") {
		t.Errorf("loading a missing file: %v", err)
	}
}
