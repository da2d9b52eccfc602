package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/state"
)

// TestSetProviderConfig: `k2 env set --provider-config` replaces what `k2
// env create` stored (config and the file it came from), keeps the values,
// and refuses a file that is not an object, leaving the config as it was.
func TestSetProviderConfig(t *testing.T) {
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	first := write("first.yaml", "forwardRegistries: [\"127.0.0.1:5000\"]\n")
	if _, err := CreateEnv(ctx, s, EnvCreateOptions{Name: "lab", Provider: "local", ProviderConfigFile: first, Sets: []string{"replicas=2"}}); err != nil {
		t.Fatal(err)
	}
	second := write("second.yaml", "forwardRegistries: [\"127.0.0.1:6000\"]\nnetwork: netns\n")
	e, err := SetProviderConfig(ctx, s, "lab", second)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(e.ProviderConfig); !strings.Contains(got, "127.0.0.1:6000") || strings.Contains(got, "5000") || !strings.Contains(got, "netns") {
		t.Errorf("provider config after set: %s", got)
	}
	if e.ProviderConfigRef != second || e.Values["replicas"] != "2" {
		t.Errorf("ref %q, values %v; want %s and replicas=2 kept", e.ProviderConfigRef, e.Values, second)
	}
	if _, err := SetProviderConfig(ctx, s, "lab", write("list.yaml", "- a\n- b\n")); err == nil {
		t.Error("a provider config that is a list: no error")
	}
	if _, err := SetProviderConfig(ctx, s, "nope", second); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown environment: %v", err)
	}
	if e, _ := s.GetEnv(ctx, "lab"); !strings.Contains(string(e.ProviderConfig), "6000") {
		t.Errorf("a refused set changed the config: %s", e.ProviderConfig)
	}
}
