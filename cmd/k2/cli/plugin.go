package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/builtin"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
)

func newPluginCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "List and inspect provider plugins",
		Long: `Provider plugins hand out the machines a cluster runs on. Each runs out of
process (hashicorp/go-plugin over gRPC), so a crashing plugin cannot take k2
down. Built-in providers (local) are compiled into k2 and started as
'k2 plugin serve <name>'; external ones are executables named
k2-provider-<name> found on $K2_PLUGIN_PATH (colon-separated) or in
$K2_HOME/plugins. Writing one: docs/plugins.md.`,
	}
	cmd.AddCommand(newPluginLsCmd(g), newPluginDescribeCmd(g), newPluginServeCmd(g))
	return cmd
}

// discoverOptions is where this k2 looks for plugins.
func (g *globals) discoverOptions() host.DiscoverOptions {
	self, _ := os.Executable()
	return host.DiscoverOptions{
		PluginPath: os.Getenv(host.PluginPathEnv),
		Home:       g.home,
		Builtins:   builtin.Names(),
		Self:       self,
	}
}

// launchProvider finds the provider plugin name and starts it; the caller
// closes the client.
func (g *globals) launchProvider(ctx context.Context, name string) (*host.Client, error) {
	plug, err := host.Find(g.discoverOptions(), name)
	if err != nil {
		return nil, err
	}
	return host.Launch(ctx, plug, g.launchOptions())
}

// launchOptions are the options every plugin launched by this k2 gets.
func (g *globals) launchOptions() host.LaunchOptions {
	return host.LaunchOptions{Logger: g.logger(), Env: []string{"K2_HOME=" + g.home}}
}

func newPluginLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List provider plugins with their capabilities",
		Long: `List every provider plugin k2 can find, launching each to ask for its
capabilities: architectures, machine classes or custom sizes, bootstrap
methods, power and console support. A plugin that fails to start is listed
with its error.`,
		Example: `  k2 plugin ls
  K2_PLUGIN_PATH=./bin k2 plugin ls -o json`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			infos, err := host.Inspect(cmd.Context(), g.discoverOptions(), g.launchOptions())
			if err != nil {
				return usererr.Wrap(usererr.KindProvider, err, "")
			}
			return output.Render(g.stdout, f, infos, func(w io.Writer) error {
				tw := output.Table(w)
				fmt.Fprintln(tw, "NAME\tSOURCE\tARCH\tBOOTSTRAP\tCAPABILITIES\tPATH")
				for _, i := range infos {
					src := "external"
					if i.Builtin {
						src = "builtin"
					}
					arch, boot, caps := "-", "-", "error: "+i.Error
					if c := i.Capabilities; c != nil {
						arch, boot, caps = strings.Join(c.Architectures, ","), strings.Join(c.BootstrapMethods, ","), host.CapabilitySummary(*c)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, src, arch, boot, caps, i.Path)
				}
				return tw.Flush()
			})
		},
	}
}

func newPluginDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a provider's capabilities and configuration settings",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			p, err := host.Find(g.discoverOptions(), args[0])
			if err != nil {
				return err
			}
			info := host.Describe(cmd.Context(), p, g.launchOptions())
			if info.Error != "" {
				return usererr.New(usererr.KindProvider, "%s", info.Error)
			}
			return output.Render(g.stdout, f, info, func(w io.Writer) error {
				c := info.Capabilities
				fmt.Fprintf(w, "%s: %s\npath: %s\narchitectures: %s\nbootstrap: %s\ncapabilities: %s\n",
					info.Name, info.Description, info.Path, strings.Join(c.Architectures, ", "),
					strings.Join(c.BootstrapMethods, ", "), host.CapabilitySummary(*c))
				if len(info.ConfigSchema) > 0 {
					fmt.Fprintln(w, "\nsettings (--provider-config FILE or --set key=value):")
					tw := output.Table(w)
					for _, s := range info.ConfigSchema {
						req := ""
						if s.Required {
							req = " (required)"
						}
						def := ""
						if s.Default != "" {
							def = " [default " + s.Default + "]"
						}
						fmt.Fprintf(tw, "  %s\t%s\t%s%s%s\n", s.Name, s.Type, s.Description, req, def)
					}
					return tw.Flush()
				}
				return nil
			})
		},
	}
}

func newPluginServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "serve NAME",
		Short:  "Serve a built-in provider over the plugin protocol (run by k2 itself)",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			newProvider, ok := builtin.Lookup(args[0])
			if !ok {
				return usererr.Usage("no built-in provider %q (built-ins: %s)", args[0], strings.Join(builtin.Names(), ", "))
			}
			sdk.Serve(newProvider)
			return nil
		},
	}
}
