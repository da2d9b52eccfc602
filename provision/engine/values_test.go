package engine_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/provision/engine"
)

func TestReadValuesFile(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      map[string]string
		err       string
	}{
		{"yaml", "replicas: 3\ndomain: x.test\n", map[string]string{"replicas": "3", "domain": "x.test"}, ""},
		{"kept as written", "ratio: 1.50\nn: no\non: yes\nhex: 0x10\n", map[string]string{"ratio": "1.50", "n": "no", "on": "yes", "hex": "0x10"}, ""},
		{"json", `{"replicas": 3, "debug": true}`, map[string]string{"replicas": "3", "debug": "true"}, ""},
		{"null", "a: ~\nb: null\n", map[string]string{"a": "", "b": ""}, ""},
		{"empty", "", map[string]string{}, ""},
		{"nested", "a: 1\nb:\n  c: 2\n", nil, "values.yaml:3: b: a value must be a string"},
		{"list", "a: [1, 2]\n", nil, "values.yaml:1: a: a value must be"},
		{"not a mapping", "- a\n", nil, "values.yaml:1: not a mapping"},
		{"bad key", "a=b: 1\n", nil, `values.yaml:1: value key "a=b"`},
		{"bad yaml", "a: [\n", nil, "values.yaml: yaml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "values.yaml")
			os.WriteFile(p, []byte(tc.src), 0o600)
			got, err := engine.ReadValuesFile(p)
			if tc.err != "" {
				if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), dir+"/", ""), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSets(t *testing.T) {
	set, unset, err := engine.ParseSets([]string{"a=1", "b=x=y", "c=", "d-"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1", "b": "x=y", "c": ""}, set); diff != "" {
		t.Errorf("set (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"d"}, unset); diff != "" {
		t.Errorf("unset (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"d-", "noequals", "=v", "a b=1"} {
		if _, _, err := engine.ParseSets([]string{bad}, false); err == nil {
			t.Errorf("ParseSets(%q) accepted", bad)
		}
	}
}
