package k8sfile

import (
	"errors"
	"os"
)

// ParseFile reads and parses the K8sfile at path. See [Parse].
func ParseFile(path string) (*File, []string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return Parse(path, src)
}

// Parse parses and validates a K8sfile. name is used in messages. It returns
// warnings, and an error that joins every problem found (each an *Error with
// its position), not just the first.
//
// TODO(k8sfile owner): replace this stub with the real lexer and parser.
func Parse(name string, src []byte) (*File, []string, error) {
	return nil, nil, errors.New("k8sfile: parser not implemented yet")
}

// Expand resolves ${name} references in s from values. A reference to a name
// absent from values is an error naming it.
//
// TODO(k8sfile owner): implement.
func Expand(s string, values map[string]string) (string, error) {
	return s, errors.New("k8sfile: Expand not implemented yet")
}
