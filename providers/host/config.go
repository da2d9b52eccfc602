package host

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
)

// LoadConfig builds a provider config from a YAML or JSON file (path may be
// empty) and key=value settings (which win over the file), typing each value
// by the schema the provider described. Schema defaults are not filled in:
// the provider applies them. Problems are KindInvalid errors naming the file
// or the setting; check the result with Client.Validate.
func LoadConfig(path string, sets []string, schema []sdk.ConfigField) (sdk.Config, error) {
	m := map[string]any{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("reading provider config: %w", err), "")
		}
		j, err := yaml.YAMLToJSON(b)
		if err != nil {
			return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", path, err), "the provider config must be a YAML or JSON object")
		}
		if string(j) != "null" {
			if err := json.Unmarshal(j, &m); err != nil {
				return nil, usererr.Wrap(usererr.KindInvalid, fmt.Errorf("%s: %w", path, err), "the provider config must be a YAML or JSON object")
			}
		}
	}
	types := map[string]string{}
	for _, f := range schema {
		types[f.Name] = f.Type
	}
	for _, s := range sets {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usererr.New(usererr.KindInvalid, "provider setting %q: want key=value", s)
		}
		switch types[k] {
		case sdk.TypeInt:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, usererr.New(usererr.KindInvalid, "provider setting %s: %q is not an integer", k, v)
			}
			m[k] = n
		case sdk.TypeBool:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, usererr.New(usererr.KindInvalid, "provider setting %s: %q is not true or false", k, v)
			}
			m[k] = b
		case sdk.TypeList:
			var l []string
			for _, e := range strings.Split(v, ",") {
				if e = strings.TrimSpace(e); e != "" {
					l = append(l, e)
				}
			}
			m[k] = l
		default:
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding provider config: %w", err)
	}
	return b, nil
}
