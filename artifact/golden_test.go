package artifact_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"oras.land/oras-go/v2/content"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenHello compares the manifest and config built from
// examples/hello byte for byte with testdata/. Run with -update after an
// intended change of the format (and bump ConfigVersion if readers break).
func TestGoldenHello(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	res := mustBuild(t, s, helloDir(t), "hello:v1", nil)
	manifest, err := content.FetchAll(ctx, s.Storage(), res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Config struct{ Digest string }
	}
	json.Unmarshal(manifest, &m)
	cfgPath := filepath.Join(s.Dir(), "blobs", "sha256", m.Config.Digest[len("sha256:"):])
	config, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{"hello.manifest.json": manifest, "hello.config.json": config} {
		var pretty bytes.Buffer
		json.Indent(&pretty, got, "", "  ")
		pretty.WriteString("\n")
		p := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(p, pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test -run GoldenHello -update)", err)
		}
		if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
