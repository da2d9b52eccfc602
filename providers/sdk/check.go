package sdk

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"time"
)

// CheckConfig checks cfg against schema: it must be a JSON object, every
// required field set, every key known and of its declared type. k2 runs it
// before calling the provider; providers may run it again in Validate.
func CheckConfig(schema []ConfigField, cfg Config) Diagnostics {
	var ds Diagnostics
	m := map[string]any{}
	if len(cfg) > 0 {
		if err := json.Unmarshal(cfg, &m); err != nil {
			ds.Errorf("config", "config is not a JSON object: %v", err)
			return ds
		}
	}
	known := map[string]ConfigField{}
	for _, f := range schema {
		known[f.Name] = f
		if _, ok := m[f.Name]; !ok && f.Required {
			ds.Errorf("config."+f.Name, "required setting %q is missing", f.Name)
		}
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		f, ok := known[k]
		if !ok {
			names := make([]string, 0, len(schema))
			for _, f := range schema {
				names = append(names, f.Name)
			}
			ds.Errorf("config."+k, "unknown setting %q; known settings: %v", k, names)
			continue
		}
		if msg := checkType(f.Type, m[k]); msg != "" {
			ds.Errorf("config."+k, "%s", msg)
		}
	}
	return ds
}

func checkType(typ string, v any) string {
	switch typ {
	case TypeString, "":
		if _, ok := v.(string); !ok {
			return fmt.Sprintf("must be a string, not %s", jsonKind(v))
		}
	case TypeInt:
		f, ok := v.(float64)
		if !ok || f != float64(int64(f)) {
			return fmt.Sprintf("must be an integer, not %s", jsonKind(v))
		}
	case TypeBool:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("must be true or false, not %s", jsonKind(v))
		}
	case TypeDuration:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("must be a duration such as \"30s\", not %s", jsonKind(v))
		}
		if _, err := time.ParseDuration(s); err != nil {
			return fmt.Sprintf("must be a duration such as \"30s\": %v", err)
		}
	case TypeList:
		l, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("must be a list of strings, not %s", jsonKind(v))
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				return "must be a list of strings"
			}
		}
	}
	return ""
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// CheckMachines checks machine requests (and the bootstrap, when not nil)
// against what caps advertises: names unique and set, arch, class, custom
// sizes, machine count and bootstrap method. Providers call it from
// Validate and Create so that they never accept what they do not offer.
func CheckMachines(caps Capabilities, machines []MachineRequest, b *Bootstrap) Diagnostics {
	var ds Diagnostics
	if caps.MaxMachines > 0 && len(machines) > int(caps.MaxMachines) {
		ds.Errorf("machines", "%d machines requested; this provider makes at most %d per request", len(machines), caps.MaxMachines)
	}
	seen := map[string]bool{}
	for i, m := range machines {
		p := fmt.Sprintf("machines[%d]", i)
		switch {
		case m.Name == "":
			ds.Errorf(p+".name", "machine name is empty")
		case seen[m.Name]:
			ds.Errorf(p+".name", "machine name %q is used twice", m.Name)
		}
		seen[m.Name] = true
		if m.Arch != "" && !slices.Contains(caps.Architectures, m.Arch) {
			ds.Errorf(p+".arch", "architecture %q is not offered; this provider offers %v", m.Arch, caps.Architectures)
		}
		if m.Class != "" && !slices.ContainsFunc(caps.Classes, func(c MachineClass) bool { return c.Name == m.Class }) {
			ds.Errorf(p+".class", "machine class %q is not offered; this provider offers %v", m.Class, classNames(caps.Classes))
		}
		if (m.CPU != 0 || m.MemoryBytes != 0) && !caps.CustomSizes {
			ds.Errorf(p, "custom sizes (cpu, memory) are not offered; pick a class from %v", classNames(caps.Classes))
		}
		if m.CPU < 0 || m.MemoryBytes < 0 || m.DiskBytes < 0 {
			ds.Errorf(p, "cpu, memory and disk must not be negative")
		}
	}
	if b != nil && !slices.Contains(caps.BootstrapMethods, b.Method) {
		ds.Errorf("bootstrap.method", "bootstrap method %q is not offered; this provider offers %v", b.Method, caps.BootstrapMethods)
	}
	if b != nil && !slices.Contains(caps.OSes(), b.OSOf()) {
		ds.Errorf("bootstrap.os", "OS %s is not offered: this provider's machines boot %v; build the artifact with OS k2, or deploy it with a provider that boots %s", b.OSOf(), caps.OSes(), b.OSOf())
	}
	if b != nil && b.Method == BootstrapExec && len(b.Command) == 0 {
		ds.Errorf("bootstrap.command", "the exec bootstrap needs a command")
	}
	return ds
}

// OSes are the operating systems c's machines boot: OperatingSystems, or
// k2 OS alone when it is empty.
func (c Capabilities) OSes() []string {
	if len(c.OperatingSystems) == 0 {
		return []string{OSK2}
	}
	return c.OperatingSystems
}

func classNames(cs []MachineClass) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}
