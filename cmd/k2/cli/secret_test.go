package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value, file, env string
		want, wantErr          string
	}{
		{name: "none"},
		{name: "flag", value: "from-flag", want: "from-flag"},
		{name: "file", file: file, want: "from-file"},
		{name: "env", env: "from-env", want: "from-env"},
		{name: "flag and env", value: "a", env: "b", wantErr: "the join token is given 2 ways (--token, $K2_TEST_TOKEN); give it exactly one way"},
		{name: "all three", value: "a", file: file, env: "b", wantErr: "given 3 ways (--token, --token-file, $K2_TEST_TOKEN)"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "nope"), wantErr: "--token-file names a file holding the join token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("K2_TEST_TOKEN", tc.env)
			s := secretFlag{name: "token", env: "K2_TEST_TOKEN", what: "join token", value: tc.value, file: tc.file}
			got, err := s.resolve()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("resolve = %q, %v; want error %q", got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "from-file") || (tc.value != "" && strings.Contains(err.Error(), tc.value+" ")) {
					t.Errorf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("resolve = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
