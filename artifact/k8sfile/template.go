package k8sfile

import (
	"fmt"
	"strings"
)

// Templates: ${name} is replaced by the value of name; $$ is a literal "$";
// any other "$" is literal. name is an ARG name, [A-Za-z_][A-Za-z0-9_]*.

// expand walks s, calling lookup for every reference.
func expand(s string, lookup func(name string) (string, error)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: %w: ${ without a closing }", s, ErrTemplate)
			}
			name := s[i+2 : i+2+end]
			if !validArgName(name) {
				return "", fmt.Errorf("${%s}: %w: %q is not an ARG name (letters, digits and _, not starting with a digit)", name, ErrTemplate, name)
			}
			v, err := lookup(name)
			if err != nil {
				return "", err
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// refs returns the names referenced in s, in order, with repeats.
func refs(s string) ([]string, error) {
	var names []string
	_, err := expand(s, func(name string) (string, error) {
		names = append(names, name)
		return "", nil
	})
	return names, err
}

func validArgName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
