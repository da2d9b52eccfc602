package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIBasics checks the spine every command relies on: version in text and
// JSON, help that lists commands, and the usage exit code.
func TestCLIBasics(t *testing.T) {
	home := t.TempDir()
	r := mustK2(t, home, "version", "-o", "json")
	var v struct{ Version, Kubernetes string }
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, r.Stdout)
	}
	if v.Kubernetes != "v1.37.2" || v.Version == "" {
		t.Errorf("version = %+v, want kubernetes v1.37.2 and a k2 version", v)
	}
	if r := mustK2(t, home, "--help"); !strings.Contains(r.Stdout, "Exit codes") {
		t.Errorf("--help does not document exit codes:\n%s", r.Stdout)
	}
	for _, args := range [][]string{{"no-such-command"}, {"version", "--no-such-flag"}, {"version", "-o", "yaml"}} {
		if r := k2(t, home, args...); r.Code != 2 {
			t.Errorf("k2 %v: exit %d, want 2 (usage)\n%s", args, r.Code, r.Stderr)
		}
	}
}

// TestSecretsNeverShown: secrets come from a flag, a file or the
// environment at run time and are never flag defaults, so neither help nor a
// usage error shows one; two sources are refused without echoing either.
func TestSecretsNeverShown(t *testing.T) {
	home := t.TempDir()
	env := []string{"K2_AGENT_TOKEN=secret", "K2_DATASTORE_ENDPOINT=postgres://k2:secret@127.0.0.1:1/k2"}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"agent", "--help"}, 0, "--token-file"},
		{[]string{"agent", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"agent", "cleanup", "--help"}, 0, "cleanup"},
		{[]string{"server", "--help"}, 0, "--datastore-endpoint-file"},
		{[]string{"server", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"agent", "--server", "https://127.0.0.1:1", "--token", "tok3n-fl4g"}, 2, "the join token is given 2 ways (--token, $K2_AGENT_TOKEN)"},
		{[]string{"server", "--datastore-endpoint", "etcd://127.0.0.1:1"}, 2, "the datastore endpoint is given 2 ways"},
	} {
		r := k2Env(t, home, env, tc.args...)
		all := r.Stdout + r.Stderr
		if r.Code != tc.code || !strings.Contains(all, tc.want) {
			t.Errorf("k2 %v: exit %d, want %d with %q:\n%s", tc.args, r.Code, tc.code, tc.want, all)
		}
		if strings.Contains(all, "secret") || strings.Contains(all, "tok3n-fl4g") {
			t.Errorf("k2 %v shows a secret:\n%s", tc.args, all)
		}
	}
}
