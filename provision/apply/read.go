package apply

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// SourceAnnotation records where an object came from ("file.yaml:12") for
// error messages. Read sets it; callers may set it too. Apply removes it
// before sending the object to the server.
const SourceAnnotation = "k2.dev/source"

// Source returns the object's SourceAnnotation.
func Source(u *unstructured.Unstructured) string {
	return u.GetAnnotations()[SourceAnnotation]
}

// ReadPaths reads the objects in files and directories (recursively: files
// ending in .yaml, .yml or .json, in name order, skipping hidden ones); "-"
// reads stdin. Every error is reported, with file and line.
func ReadPaths(paths []string, stdin io.Reader) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	var errs []error
	for _, p := range paths {
		if p == "-" {
			got, err := Decode(stdin, "<stdin>")
			objs = append(objs, got...)
			errs = append(errs, err)
			continue
		}
		files, err := manifestFiles(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			got, err := readFile(f)
			objs = append(objs, got...)
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}

// IsManifest reports whether a file name is one ReadPaths reads in a directory.
func IsManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

func manifestFiles(root string) ([]string, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	if !st.IsDir() {
		return []string{root}, nil
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && IsManifest(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if err != nil {
		return nil, fmt.Errorf("reading manifests in %s: %w", root, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no .yaml, .yml or .json files in %s", ErrInvalidObject, root)
	}
	return files, nil
}

func readFile(name string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading manifests: %w", err)
	}
	defer f.Close()
	return Decode(f, name)
}

// Decode reads a YAML stream (documents separated by ---) or a JSON
// document; a List's items become separate objects. name is used in errors
// and SourceAnnotation values ("name:line").
func Decode(r io.Reader, name string) ([]*unstructured.Unstructured, error) {
	docs, err := splitYAML(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	var objs []*unstructured.Unstructured
	var errs []error
	for _, d := range docs {
		src := fmt.Sprintf("%s:%d", name, d.line)
		var m map[string]any
		if err := yaml.Unmarshal(d.body, &m); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w: %w", src, ErrInvalidObject, err))
			continue
		}
		if m == nil {
			continue // empty document
		}
		got, err := fromMap(m, src)
		objs = append(objs, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return objs, errors.Join(errs...)
}

func fromMap(m map[string]any, src string) ([]*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: m}
	if u.IsList() || strings.HasSuffix(u.GetKind(), "List") && m["items"] != nil {
		items, _ := m["items"].([]any)
		var objs []*unstructured.Unstructured
		var errs []error
		for i, it := range items {
			im, ok := it.(map[string]any)
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %w: items[%d] is not an object", src, ErrInvalidObject, i))
				continue
			}
			got, err := fromMap(im, fmt.Sprintf("%s items[%d]", src, i))
			objs = append(objs, got...)
			errs = append(errs, err)
		}
		return objs, errors.Join(errs...)
	}
	if u.GetKind() == "" {
		return nil, fmt.Errorf("%s: %w: the object has no kind; add e.g. kind: Deployment", src, ErrInvalidObject)
	}
	if u.GetName() == "" {
		return nil, fmt.Errorf("%s: %w: %s has no metadata.name", src, ErrInvalidObject, u.GetKind())
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	if _, ok := ann[SourceAnnotation]; !ok {
		ann[SourceAnnotation] = src
		u.SetAnnotations(ann)
	}
	return []*unstructured.Unstructured{u}, nil
}

type doc struct {
	line int // 1-based line of the document's first line
	body []byte
}

// splitYAML splits a stream at lines starting with "---", keeping each
// document's first line number. A JSON stream is one document.
func splitYAML(r io.Reader) ([]doc, error) {
	br := bufio.NewReader(r)
	peek, _ := br.Peek(512)
	if t := bytes.TrimSpace(peek); len(t) > 0 && t[0] == '{' {
		b, err := io.ReadAll(br)
		if err != nil {
			return nil, err
		}
		return []doc{{line: 1, body: b}}, nil
	}
	var docs []doc
	cur := doc{line: 1}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("---")) && (len(line) == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r') {
			docs = append(docs, cur)
			cur = doc{line: n + 1}
			continue
		}
		if t := bytes.TrimSpace(line); len(cur.body) == 0 && (len(t) == 0 || t[0] == '#') {
			cur.line = n + 1 // start at the first non-blank line
			continue
		}
		cur.body = append(cur.body, line...)
		cur.body = append(cur.body, '\n')
	}
	docs = append(docs, cur)
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return docs, nil
}
