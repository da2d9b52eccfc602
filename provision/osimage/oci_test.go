package osimage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/registrytest"
)

// TestPushPull moves an image through a registry and the local store and
// gets the same files back.
func TestPushPull(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	m, err := Build(ctx, smallOptions(t, src))
	if err != nil {
		t.Fatal(err)
	}
	store, err := artifact.OpenStore(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := registrytest.New(t)
	for _, ref := range []string{reg + "/k2/os:v1", "k2os:v1"} {
		t.Run(ref, func(t *testing.T) {
			target, err := artifact.Locate(store, ref, artifact.RemoteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			d, err := Push(ctx, src, target)
			if err != nil {
				t.Fatal(err)
			}
			if d.ArtifactType != ArtifactType {
				t.Errorf("artifactType %q", d.ArtifactType)
			}
			dst := t.TempDir()
			target, _ = artifact.Locate(store, artifact.PinnedRef(target.Ref, d.Digest.String()), artifact.RemoteOptions{})
			got, err := Pull(ctx, target, dst)
			if err != nil {
				t.Fatal(err)
			}
			if got.Initramfs.SHA256 != m.Initramfs.SHA256 {
				t.Error("pulled manifest differs")
			}
			for _, f := range []string{KernelFile, InitramfsFile, ManifestFile} {
				a, _ := os.ReadFile(filepath.Join(src, f))
				b, err := os.ReadFile(filepath.Join(dst, f))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s differs after the round trip (%v)", f, err)
				}
			}
		})
	}
	// A file that no longer matches k2os.json is refused before anything
	// is pushed.
	os.WriteFile(filepath.Join(src, KernelFile), []byte("tampered"), 0o644)
	target, _ := artifact.Locate(store, reg+"/k2/os:v2", artifact.RemoteOptions{})
	if _, err := Push(ctx, src, target); err == nil || !strings.Contains(err.Error(), "does not match k2os.json") {
		t.Errorf("pushing a tampered image: %v", err)
	}
	// A cluster artifact is not an OS image.
	if _, err := artifact.StoreFile(ctx, store, "notos:v1", artifact.BackupArtifactType, artifact.BackupMediaType, filepath.Join(src, ManifestFile), nil); err != nil {
		t.Fatal(err)
	}
	target, _ = artifact.Locate(store, "notos:v1", artifact.RemoteOptions{})
	if _, err := Pull(ctx, target, t.TempDir()); err == nil || !strings.Contains(err.Error(), "is not a k2 OS image") {
		t.Errorf("pulling a backup as an OS image: %v", err)
	}
}
