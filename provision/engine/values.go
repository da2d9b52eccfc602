package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/state"
)

// ReadValuesFile reads ARG values from a YAML or JSON file holding one flat
// mapping (replicas: 3). Each value is kept as written ("1.50" stays 1.50,
// "n" stays n: YAML 1.2, no yes/no booleans); ~ or null is the empty string.
// A nested mapping or list is an error naming the key and its line.
func ReadValuesFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading values: %w", err), "")
	}
	const hint = "a values file is a YAML or JSON mapping such as 'replicas: 3'"
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", path, err), hint)
	}
	out := map[string]string{}
	if len(doc.Content) == 0 {
		return out, nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s:%d: not a mapping of values", path, m.Line), hint)
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if err := state.ValidateValueKey(k.Value); err != nil {
			return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s:%d: %w", path, k.Line, err), "")
		}
		if v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if v.Kind != yaml.ScalarNode {
			return nil, usererr.Wrap(usererr.KindInvalid,
				fmt.Errorf("%s:%d: %s: a value must be a string, number or boolean, not a list or mapping", path, v.Line, k.Value), "")
		}
		if v.Tag == "!!null" {
			out[k.Value] = ""
			continue
		}
		out[k.Value] = v.Value
	}
	return out, nil
}

// ParseSets parses --set style arguments: key=value sets a value; with
// allowUnset, key- (no '=') removes the key. Errors name the argument.
func ParseSets(args []string, allowUnset bool) (set map[string]string, unset []string, err error) {
	set = map[string]string{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			if allowUnset && strings.HasSuffix(a, "-") && len(a) > 1 {
				unset = append(unset, strings.TrimSuffix(a, "-"))
				continue
			}
			hint := "write key=value, e.g. replicas=3"
			if allowUnset {
				hint += ", or key- to remove a value"
			}
			return nil, nil, usererr.New(usererr.KindUsage, "value %q: missing '='; %s", a, hint)
		}
		if err := state.ValidateValueKey(k); err != nil {
			return nil, nil, usererr.Wrap(usererr.KindUsage, err, "")
		}
		set[k] = v
	}
	return set, unset, nil
}

// ReadConfigFile reads a provider configuration from a YAML or JSON file
// and returns it as a JSON object.
func ReadConfigFile(path string) (json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading provider config: %w", err), "")
	}
	j, err := sigsyaml.YAMLToJSON(b)
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", path, err), "the provider config is a YAML or JSON object")
	}
	if string(j) == "null" {
		return json.RawMessage(`{}`), nil
	}
	var obj map[string]any
	if err := json.Unmarshal(j, &obj); err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: not an object", path), "the provider config is a YAML or JSON object")
	}
	return json.RawMessage(j), nil
}
