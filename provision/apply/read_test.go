package apply_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/provision/apply"
)

func TestReadPaths(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", `# leading comment
kind: ConfigMap
metadata: {name: one}
---

---
# a Deployment without apiVersion
kind: Deployment
metadata:
  name: two
--- # trailing comment on the separator
apiVersion: v1
kind: List
items:
- {kind: Service, metadata: {name: three}}
- {kind: Secret, metadata: {name: four}}
`)
	write("sub/b.json", `{"kind": "Namespace", "metadata": {"name": "five"}}`)
	write("sub/notes.txt", "not a manifest")
	write(".hidden/c.yaml", "kind: Broken")
	objs, err := apply.ReadPaths([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		src := strings.TrimPrefix(apply.Source(o), dir+"/")
		got = append(got, o.GetKind()+"/"+o.GetName()+" @ "+src)
	}
	want := []string{
		"ConfigMap/one @ a.yaml:2",
		"Deployment/two @ a.yaml:8",
		"Service/three @ a.yaml:12 items[0]",
		"Secret/four @ a.yaml:12 items[1]",
		"Namespace/five @ sub/b.json:1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-want +got):\n%s", diff)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	_, err := apply.Decode(strings.NewReader("kind: A\nmetadata: {name: a}\n---\nmetadata: {name: b}\n---\nkind: C\n---\nkind: [\n"), "m.yaml")
	if !errors.Is(err, apply.ErrInvalidObject) {
		t.Fatalf("err = %v, want ErrInvalidObject", err)
	}
	for _, w := range []string{"m.yaml:4: invalid object: the object has no kind", "m.yaml:6: invalid object: C has no metadata.name", "m.yaml:8: invalid object"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
