package metal

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// talosInput is a 1+2 cluster with a fixed secrets bundle (testdata, test
// keys only) and clock, so the configs are the same bytes every run.
func talosInput(t *testing.T) TalosInput {
	t.Helper()
	path := filepath.Join("testdata", "talos", "secrets.yaml")
	var bundle *secrets.Bundle
	if b, err := secrets.LoadBundle(path); err == nil {
		bundle = b
	} else if !*update {
		t.Fatalf("loading %s (run with -update to make it): %v", path, err)
	}
	return TalosInput{
		ClusterName: "prod", Endpoint: "https://10.0.0.10:6443", KubernetesVersion: "v1.32.3", TalosVersion: "v1.10.6",
		ImageRegistry: "127.0.0.1:5000/mirror", Secrets: bundle, Now: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC),
		Machines: []TalosMachine{
			{Name: "prod-cp-0", Role: "control-plane", Disk: "/dev/nvme0n1", Labels: map[string]string{"k2.dev/pool": "control-plane"}},
			{Name: "prod-w-0", Role: "worker", Labels: map[string]string{"k2.dev/pool": "worker"}},
			{Name: "prod-w-1", Role: "worker", Disk: "/dev/vda", Labels: map[string]string{"k2.dev/pool": "worker"}},
		},
	}
}

// TestTalosGolden pins the configs of a 1+2 cluster: valid by machinery
// (GenerateTalos validates, and configloader re-reads each), the same bytes
// every run, every image from the site's mirror.
func TestTalosGolden(t *testing.T) {
	in := talosInput(t)
	out, err := GenerateTalos(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "talos")
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if in.Secrets == nil {
			if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), out.Secrets, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Fatal("wrote a new secrets bundle; run -update again for the configs")
		}
	}
	if len(out.Machines) != 3 {
		t.Fatalf("%d configs, want 3", len(out.Machines))
	}
	t.Logf("warnings: %v", out.Warnings)
	for name, b := range out.Machines {
		if _, err := configloader.NewFromBytes(b); err != nil {
			t.Errorf("machinery cannot load %s's config: %v", name, err)
		}
		if strings.Contains(string(b), "image: ") {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.Contains(l, "image: ") && !strings.Contains(l, "127.0.0.1:5000/mirror/") {
					t.Errorf("%s: image not from the mirror: %s", name, strings.TrimSpace(l))
				}
			}
		}
		golden := filepath.Join(dir, name+".yaml")
		if *update {
			if err := os.WriteFile(golden, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(want), string(b)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}

// TestTalosBadInput: machinery's own message reaches the user, with the
// machine named.
func TestTalosBadInput(t *testing.T) {
	in := talosInput(t)
	in.Machines[2].Labels = map[string]string{"k2.dev/pool": "not a label value!"}
	_, err := GenerateTalos(in)
	if !errors.Is(err, ErrTalosConfig) {
		t.Fatalf("err %v, want ErrTalosConfig", err)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{"machine prod-w-1", "invalid machine node labels", "not a label value!"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "prod-w-0") || strings.Contains(msg, "prod-cp-0") {
		t.Errorf("message names machines that are fine: %s", msg)
	}

	in = talosInput(t)
	in.Endpoint = "10.0.0.10"
	if _, err := GenerateTalos(in); err == nil {
		t.Error("an endpoint that is not a URL was accepted")
	} else {
		t.Log(err)
	}
}
