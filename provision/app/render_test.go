package app_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"k2.dev/k2/provision/app"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func readApp(t *testing.T, path string) *app.App {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := &app.App{}
	if err := yaml.UnmarshalStrict(b, a); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return a
}

// TestRenderGolden renders every testdata/render/*.app.yaml and compares the
// children byte for byte with the .golden.yaml next to it (-update rewrites).
func TestRenderGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/render/*.app.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".app.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			objs, err := app.Render(readApp(t, in))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			for _, o := range objs {
				b, err := yaml.Marshal(o.Object)
				if err != nil {
					t.Fatal(err)
				}
				buf.WriteString("---\n")
				buf.Write(b)
			}
			golden := strings.TrimSuffix(in, ".app.yaml") + ".golden.yaml"
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("children differ from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	one, three := int32(1), int32(-1)
	_ = one
	tests := []struct {
		name string
		spec app.Spec
		want []string // substrings of the error; none: valid
	}{
		{"minimal", app.Spec{Image: "nginx"}, nil},
		{"no image", app.Spec{}, []string{"spec.image is required"}},
		{"bad ports", app.Spec{Image: "x", Ports: []app.Port{app.IntPort(0), {}, app.IntPort(80), app.IntPort(80)}},
			[]string{"spec.ports[0]: port 0 out of range", "spec.ports[1]", "spec.ports[3]: 80/TCP listed twice"}},
		{"negative replicas", app.Spec{Image: "x", Replicas: &three}, []string{"spec.replicas"}},
		{"autoscale", app.Spec{Image: "x", Autoscale: &app.Autoscale{Min: 3, Max: 2}}, []string{"min=3 max=2"}},
		{"env", app.Spec{Image: "x", Env: []app.EnvVar{{Name: "1A"}, {Name: "B"}, {Name: "B"}}},
			[]string{`spec.env[0]: name "1A"`, "spec.env[2]: B set twice"}},
		{"expose without ports", app.Spec{Image: "x", Expose: &app.Expose{Host: "a.example.com"}},
			[]string{"no ports to expose"}},
		{"volume", app.Spec{Image: "x", Volume: &app.Volume{Path: "data", Size: "lots"}},
			[]string{"spec.volume.path", "spec.volume.size"}},
		{"disruption", app.Spec{Image: "x", Disruption: &app.Disruption{}}, []string{"exactly one"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := app.Validate(&tt.spec)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, app.ErrInvalid) {
				t.Fatalf("Validate = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPortForms(t *testing.T) {
	t.Parallel()
	var s app.Spec
	if err := yaml.Unmarshal([]byte(`{image: x, ports: [80, "81", "53/udp", "132/SCTP"]}`), &s); err != nil {
		t.Fatal(err)
	}
	type np struct {
		N int32
		P string
	}
	var got []np
	for _, p := range s.Ports {
		n, proto, err := p.Parse()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, np{n, proto})
	}
	want := []np{{80, "TCP"}, {81, "TCP"}, {53, "UDP"}, {132, "SCTP"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	if _, _, err := (app.Port{}).Parse(); err == nil {
		t.Error("empty port parsed")
	}
}

func TestURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ file, want string }{
		{"k8sfile", "http://web.default.svc:80"},
		{"full", "https://shop.example.com/api"},
		{"noports", ""},
	} {
		if got := app.URL(readApp(t, "testdata/render/"+tt.file+".app.yaml")); got != tt.want {
			t.Errorf("URL(%s) = %q, want %q", tt.file, got, tt.want)
		}
	}
}
