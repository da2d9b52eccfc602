package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/usererr"
)

// run executes k2 args with home as $K2_HOME and returns stdout and the exit code.
func run(t *testing.T, home string, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}
	root := newRootCmd(g)
	root.SetArgs(append([]string{"--home", home}, args...))
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(context.Background())
	if err != nil {
		out.WriteString("error: " + err.Error())
	}
	return out.String(), usererr.ExitCode(context.Background(), err)
}

func TestEnvCommands(t *testing.T) {
	home := t.TempDir()
	values := filepath.Join(t.TempDir(), "values.yaml")
	os.WriteFile(values, []byte("replicas: 2\ndomain: x.test\n"), 0o600)

	for _, tc := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"env", "ls"}, 0, "no environments"},
		{[]string{"env", "create", "prod", "--provider", "local", "--values", values, "--set", "replicas=3"}, 0, "created environment prod (provider local)"},
		{[]string{"env", "create", "prod", "--provider", "local"}, 1, `environment "prod": already exists`},
		{[]string{"env", "create", "dev"}, 2, "--provider is required"},
		{[]string{"env", "create", "Dev", "--provider", "local"}, 2, "lowercase letters"},
		{[]string{"env", "create", "dev", "--provider", "local", "--values", "/nonexistent.yaml"}, 3, "reading values"},
		{[]string{"env", "set", "prod", "domain-", "tier=gold"}, 0, "replicas=3\ntier=gold\n"},
		{[]string{"env", "set", "prod", "oops"}, 2, "missing '='"},
		{[]string{"env", "set", "nope", "a=b"}, 1, `environment "nope": not found`},
		{[]string{"env", "show", "prod"}, 0, "  replicas=3\n  tier=gold\n"},
		{[]string{"env", "ls"}, 0, "prod  local     2"},
		{[]string{"history", "prod"}, 0, "no deployments of prod yet"},
		{[]string{"history", "nope"}, 1, "not found"},
		{[]string{"env", "unlock", "prod"}, 0, "unlocked environment prod"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, code := run(t, home, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.contains) {
				t.Errorf("exit %d, output:\n%s\nwant exit %d and %q", code, out, tc.code, tc.contains)
			}
		})
	}

	out, code := run(t, home, "env", "show", "prod", "-o", "json")
	if code != 0 {
		t.Fatal(out)
	}
	var got struct {
		Name     string            `json:"name"`
		Provider string            `json:"provider"`
		Values   map[string]string `json:"values"`
		Machines []any             `json:"machines"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	want := map[string]string{"replicas": "3", "tier": "gold"}
	if diff := cmp.Diff(want, got.Values); diff != "" || got.Name != "prod" || got.Machines == nil {
		t.Errorf("env show -o json: %s\n(-want +got values):\n%s", out, diff)
	}
	out, _ = run(t, home, "history", "prod", "-o", "json")
	if strings.TrimSpace(out) != "[]" {
		t.Errorf("history -o json of a new env = %q, want []", out)
	}
}
