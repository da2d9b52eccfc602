package artifact

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"gopkg.in/yaml.v3"
)

// isManifestFile reports whether name looks like a Kubernetes manifest.
func isManifestFile(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// objectsOf reads every object of a (multi-document) YAML or JSON manifest.
// Empty documents are skipped; "kind: List" is expanded into its items.
// A document without kind is an error.
func objectsOf(data []byte) ([]Object, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []Object
	for i := 1; ; i++ {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if doc == nil {
			continue
		}
		objs, err := objectsFromMap(doc)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		out = append(out, objs...)
	}
}

func objectsFromMap(doc map[string]any) ([]Object, error) {
	str := func(m map[string]any, k string) string {
		s, _ := m[k].(string)
		return s
	}
	o := Object{APIVersion: str(doc, "apiVersion"), Kind: str(doc, "kind")}
	if o.Kind == "" {
		return nil, errors.New("object has no kind; every Kubernetes object needs kind (apiVersion may be omitted)")
	}
	if md, ok := doc["metadata"].(map[string]any); ok {
		o.Name, o.Namespace = str(md, "name"), str(md, "namespace")
		if o.Name == "" && str(md, "generateName") != "" {
			o.Name = str(md, "generateName") + "*"
		}
	}
	if strings.HasSuffix(o.Kind, "List") && (o.APIVersion == "" || o.APIVersion == "v1") {
		items, _ := doc["items"].([]any)
		var out []Object
		for _, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			objs, err := objectsFromMap(m)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	return []Object{o}, nil
}
