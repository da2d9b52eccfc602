package host

import (
	"context"
	"fmt"
	"strings"

	"k2.dev/k2/providers/sdk"
)

// Info is a discovered plugin with what it said about itself.
type Info struct {
	Plugin
	Description  string            `json:"description,omitempty"`
	Capabilities *sdk.Capabilities `json:"capabilities,omitempty"`
	ConfigSchema []sdk.ConfigField `json:"configSchema,omitempty"`
	// Error is why the plugin could not be launched or described.
	Error string `json:"error,omitempty"`
}

// Inspect discovers every plugin, launches each in turn and asks it to
// describe itself. A plugin that fails is reported in its Info.Error, not
// as an error of Inspect.
func Inspect(ctx context.Context, d DiscoverOptions, l LaunchOptions) ([]Info, error) {
	ps, err := Discover(d)
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(ps))
	for _, p := range ps {
		out = append(out, Describe(ctx, p, l))
	}
	return out, nil
}

// Describe launches p, asks for its description and stops it.
func Describe(ctx context.Context, p Plugin, l LaunchOptions) Info {
	info := Info{Plugin: p}
	c, err := Launch(ctx, p, l)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	defer c.Close()
	d, err := c.Describe(ctx, nil)
	if err != nil {
		info.Error = err.Error()
		return info
	}
	info.Description, info.Capabilities, info.ConfigSchema = d.Description, &d.Capabilities, d.ConfigSchema
	return info
}

// CapabilitySummary is a short text form of c for tables: classes or
// custom sizes, the machine limit, power, console and disks.
func CapabilitySummary(c sdk.Capabilities) string {
	var parts []string
	if len(c.Classes) > 0 {
		var names []string
		for _, k := range c.Classes {
			names = append(names, k.Name)
		}
		parts = append(parts, "classes="+strings.Join(names, ","))
	}
	if c.CustomSizes {
		parts = append(parts, "custom-sizes")
	}
	if c.MaxMachines > 0 {
		parts = append(parts, fmt.Sprintf("max=%d", c.MaxMachines))
	}
	for _, b := range []struct {
		on   bool
		name string
	}{{c.Power, "power"}, {c.Console, "console"}, {c.PersistentDisks, "disks"}} {
		if b.on {
			parts = append(parts, b.name)
		}
	}
	if len(c.OperatingSystems) > 0 {
		parts = append(parts, "os="+strings.Join(c.OperatingSystems, ","))
	}
	return strings.Join(parts, " ")
}
