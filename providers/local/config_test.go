package local

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/providers/sdk"
)

// TestNodeSettings: forwardRegistries and resolvConf are checked, and a
// node's environment gets the registries (merged with those the artifact
// names) and the resolver configuration.
func TestNodeSettings(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		cfg   map[string]any
		diags []string // paths
	}{
		{"ok", map[string]any{"forwardRegistries": []string{"127.0.0.1:5000", "localhost:5001"}, "resolvConf": resolv}, nil},
		{"not loopback", map[string]any{"forwardRegistries": []string{"10.0.0.1:5000"}}, []string{"config.forwardRegistries[0]"}},
		{"no port", map[string]any{"forwardRegistries": []string{"127.0.0.1"}}, []string{"config.forwardRegistries[0]"}},
		{"relative resolvConf", map[string]any{"resolvConf": "resolv.conf"}, []string{"config.resolvConf"}},
		{"missing resolvConf", map[string]any{"resolvConf": filepath.Join(dir, "nope")}, []string{"config.resolvConf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg["stateDir"] = dir
			b, _ := json.Marshal(tc.cfg)
			_, ds := load(sdk.Config(b))
			var paths []string
			for _, d := range ds {
				paths = append(paths, d.Path)
			}
			if d := cmp.Diff(tc.diags, paths); d != "" {
				t.Errorf("diagnostics (-want +got):\n%s\n%v", d, ds)
			}
		})
	}
	c := config{ForwardRegistries: []string{"127.0.0.1:5000", "localhost:5001"}, ResolvConf: resolv}
	got := c.nodeEnv(sdk.Bootstrap{Env: map[string]string{EnvForwardLoopback: "127.0.0.1:6000,127.0.0.1:5000"}})
	want := []string{EnvForwardLoopback + "=127.0.0.1:6000,127.0.0.1:5000,127.0.0.1:5001", EnvResolvConf + "=" + resolv}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("nodeEnv (-want +got):\n%s", d)
	}
	if env := (config{}).nodeEnv(sdk.Bootstrap{}); len(env) != 0 {
		t.Errorf("no settings: %v", env)
	}
}
