package k8sfile_test

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact/k8sfile"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the parser's output")

// TestGolden parses every testdata/<case>.K8sfile and compares the result
// with testdata/<case>.golden: the parsed File as indented JSON (with the
// warnings), or the error text.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.K8sfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.K8sfile")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".K8sfile")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := render(k8sfile.Parse("K8sfile", src))
			golden := strings.TrimSuffix(in, ".K8sfile") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// render is the golden text of a Parse result.
func render(f *k8sfile.File, warns []string, err error) string {
	var b strings.Builder
	for _, w := range warns {
		b.WriteString("warning: " + w + "\n")
	}
	if err != nil {
		b.WriteString(err.Error() + "\n")
		return b.String()
	}
	out, jerr := json.MarshalIndent(view(f), "", "  ")
	if jerr != nil {
		panic(jerr)
	}
	b.Write(out)
	b.WriteByte('\n')
	return b.String()
}

// layerView tags each layer with its instruction, which the interface
// slice does not show in JSON.
type layerView struct {
	Kind  string
	Layer k8sfile.Layer
}

func view(f *k8sfile.File) any {
	layers := make([]layerView, 0, len(f.Layers))
	for _, l := range f.Layers {
		kind := ""
		switch l.(type) {
		case *k8sfile.Add:
			kind = "ADD"
		case *k8sfile.Install:
			kind = "INSTALL"
		case *k8sfile.App:
			kind = "APP"
		}
		layers = append(layers, layerView{Kind: kind, Layer: l})
	}
	return struct {
		Name     string
		From     k8sfile.From
		Args     []k8sfile.Arg
		Labels   []k8sfile.Label
		Layers   []layerView
		Machines []k8sfile.MachinePool
		OS       *k8sfile.OS `json:",omitempty"`
	}{f.Name, f.From, f.Args, f.Labels, layers, f.Machines, f.OS}
}
