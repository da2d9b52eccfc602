// Package host is k2's side of provider plugins: it finds them (built into
// the k2 binary or external k2-provider-<name> executables), launches each
// out of process through go-plugin, relays its stderr into k2's log, and
// wraps every call with a deadline and an error naming the plugin.
//
// The deploy engine uses it like this:
//
//	p, err := host.Find(host.DiscoverOptions{...}, "local")
//	c, err := host.Launch(ctx, p, host.LaunchOptions{Logger: log})
//	defer c.Close()
//	desc, err := c.Describe(ctx)
//	cfg, err := host.LoadConfig(file, sets, desc.ConfigSchema)
//	v, err := c.Validate(ctx, &sdk.ValidateRequest{Config: cfg, Machines: ms})
//	resp, err := c.Create(ctx, &sdk.CreateRequest{RequestID: id, ...})
//
// *Client implements sdk.Provider, so code that only needs calls can take
// that interface.
package host

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k2.dev/k2/internal/usererr"
)

// ExecutablePrefix starts the file name of every external provider plugin.
const ExecutablePrefix = "k2-provider-"

// PluginPathEnv lists extra directories (colon-separated) searched for
// external plugins before $K2_HOME/plugins.
const PluginPathEnv = "K2_PLUGIN_PATH"

// Plugin is a provider plugin found on this host.
type Plugin struct {
	Name string `json:"name"`
	// Path is the executable: the plugin itself, or k2 for a built-in.
	Path    string `json:"path"`
	Builtin bool   `json:"builtin"`
	// Shadows is set when this plugin hides another of the same name
	// found later in the search order (its path, or "builtin").
	Shadows []string `json:"shadows,omitempty"`
}

// Args is the command line that starts the plugin.
func (p Plugin) Args() []string {
	if p.Builtin {
		return []string{p.Path, "plugin", "serve", p.Name}
	}
	return []string{p.Path}
}

// DiscoverOptions says where to look. The zero value finds nothing.
type DiscoverOptions struct {
	// PluginPath is $K2_PLUGIN_PATH: directories searched first, in order.
	PluginPath string
	// Home is $K2_HOME; Home/plugins is searched after PluginPath.
	Home string
	// Builtins are the providers compiled into Self.
	Builtins []string
	// Self is the k2 executable that serves built-ins ("k2 plugin serve").
	Self string
}

// Dirs returns the directories searched for external plugins, in order.
func (o DiscoverOptions) Dirs() []string {
	var dirs []string
	for _, d := range filepath.SplitList(o.PluginPath) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	if o.Home != "" {
		dirs = append(dirs, filepath.Join(o.Home, "plugins"))
	}
	return dirs
}

// Discover lists the plugins visible with opts, sorted by name. An external
// plugin overrides a built-in of the same name (so a developer can try a
// new build of a built-in); an earlier directory wins over a later one.
func Discover(opts DiscoverOptions) ([]Plugin, error) {
	found := map[string]*Plugin{}
	var order []string
	add := func(p Plugin) {
		if prev, ok := found[p.Name]; ok {
			shadow := p.Path
			if p.Builtin {
				shadow = "builtin"
			}
			prev.Shadows = append(prev.Shadows, shadow)
			return
		}
		found[p.Name] = &p
		order = append(order, p.Name)
	}
	for _, dir := range opts.Dirs() {
		entries, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading plugin directory %s: %w", dir, err)
		}
		for _, e := range entries {
			name, ok := strings.CutPrefix(e.Name(), ExecutablePrefix)
			if !ok || name == "" {
				continue
			}
			path := filepath.Join(dir, e.Name())
			fi, err := os.Stat(path) // follows symlinks
			if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				continue
			}
			add(Plugin{Name: name, Path: path})
		}
	}
	for _, name := range opts.Builtins {
		add(Plugin{Name: name, Path: opts.Self, Builtin: true})
	}
	sort.Strings(order)
	out := make([]Plugin, 0, len(order))
	for _, n := range order {
		out = append(out, *found[n])
	}
	return out, nil
}

// Find returns the plugin called name, or a provider error saying where k2
// looked.
func Find(opts DiscoverOptions, name string) (Plugin, error) {
	ps, err := Discover(opts)
	if err != nil {
		return Plugin{}, usererr.Wrap(usererr.KindProvider, err, "")
	}
	var names []string
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Plugin{}, usererr.Wrap(usererr.KindProvider,
		fmt.Errorf("provider %q not found (available: %s)", name, strings.Join(names, ", ")),
		fmt.Sprintf("install an executable named %s%s in $%s or %s", ExecutablePrefix, name, PluginPathEnv, filepath.Join(opts.Home, "plugins")))
}
