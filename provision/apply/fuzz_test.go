package apply_test

import (
	"strings"
	"testing"

	"k2.dev/k2/provision/apply"
)

// FuzzDecode feeds arbitrary bytes to the manifest reader: it may refuse
// them, but must not panic, and every object it returns has a kind, a name
// and a source.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		"kind: ConfigMap\nmetadata: {name: a}\n",
		"---\n---\nkind: List\nitems: [{kind: Service, metadata: {name: s}}]\n",
		`{"kind": "Namespace", "metadata": {"name": "n"}}`,
		"kind: [\n",
		"# only a comment\n--- # x\n",
		"kind: List\nitems: [1, {kind: A}]\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		objs, _ := apply.Decode(strings.NewReader(in), "fuzz.yaml")
		for _, o := range objs {
			if o.GetKind() == "" || o.GetName() == "" || !strings.HasPrefix(apply.Source(o), "fuzz.yaml:") {
				t.Fatalf("object without kind, name or source: %v", o.Object)
			}
		}
	})
}
