package aws_test

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"k2.dev/k2/internal/ec2fake"
	"k2.dev/k2/providers/aws"
	"k2.dev/k2/providers/providertest"
)

// TestCloudInitSchema checks the cloud-config k2 writes for stock images
// with Debian's cloud-init itself (`cloud-init schema`, a validator nobody
// here wrote), for both ways of fetching k2, and checks the fetch script
// with the shell's parser. Skipped without cloud-init (CI installs it, and
// there a missing one fails).
func TestCloudInitSchema(t *testing.T) {
	if _, err := exec.LookPath("cloud-init"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("cloud-init is missing in CI (.ci/run installs it)")
		}
		t.Skip("cloud-init not installed (apt-get install cloud-init)")
	}
	for name, set := range map[string]map[string]any{
		"k2_url":   {"k2_url": "http://127.0.0.1:1/k2-{arch}"},
		"k2_image": {"k2_url": "", "k2_image": "127.0.0.1:5000/k2/k2:v1"},
	} {
		t.Run(name, func(t *testing.T) {
			fake, cfg := fakeConfig(t, ec2fake.Options{}, nil)
			_, cfg = withConfig(t, cfg, set)
			p := providertest.Connect(t, aws.New)
			create(t, p, cfg, cpRequest("req-schema"))
			ud, _ := base64.StdEncoding.DecodeString(fake.Calls("RunInstances")[0].Params.Get("UserData"))
			dir := t.TempDir()
			doc := filepath.Join(dir, "user-data")
			os.WriteFile(doc, ud, 0o600)
			out, err := exec.Command("cloud-init", "schema", "--config-file", doc).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
				t.Fatalf("cloud-init schema: %v\n%s\n%s", err, out, ud)
			}
			var cc struct {
				WriteFiles []struct{ Path, Content string } `yaml:"write_files"`
			}
			yaml.Unmarshal(ud, &cc)
			for _, f := range cc.WriteFiles {
				if f.Path != "/usr/local/lib/k2/fetch-k2" {
					continue
				}
				script := filepath.Join(dir, "fetch-k2")
				os.WriteFile(script, []byte(f.Content), 0o755)
				if out, err := exec.Command("sh", "-n", script).CombinedOutput(); err != nil {
					t.Errorf("the fetch script does not parse: %v\n%s\n%s", err, out, f.Content)
				}
				return
			}
			t.Errorf("no fetch script in:\n%s", ud)
		})
	}
}
