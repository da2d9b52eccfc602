// Package cli holds k2's cobra commands: one file per verb, each built by a
// newXCmd(g) constructor. A command parses flags, calls one library function
// and renders the result; the work lives in the library packages.
package cli

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
)

// globals are the flags and streams every command shares.
type globals struct {
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	outFlag   string
	quiet     bool
	verbose   bool
	logFormat string
	home      string // $K2_HOME, default ~/.k2
}

// format returns the parsed -o flag.
func (g *globals) format() (output.Format, error) {
	f, err := output.Parse(g.outFlag)
	if err != nil {
		return "", usererr.Wrap(usererr.KindUsage, err, "")
	}
	return f, nil
}

// logger returns the logger commands hand to libraries: text on a terminal,
// JSON with --log-format json; -q keeps only errors, -v adds debug.
func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	switch {
	case g.quiet:
		level = slog.LevelError
	case g.verbose:
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(g.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(g.stderr, opts))
}

func defaultHome() string {
	if h := os.Getenv("K2_HOME"); h != "" {
		return h
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".k2")
	}
	return ".k2"
}

// Execute runs k2 with args (without the program name).
func Execute(ctx context.Context, args []string) error {
	// Kubernetes packages register flags (--version, klog's) on the global
	// pflag set at init, and cobra would show them on every k2 command.
	pflag.CommandLine = pflag.NewFlagSet("k2", pflag.ContinueOnError)
	g := &globals{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(g.stdin)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && strings.HasPrefix(err.Error(), "unknown command") {
		return usererr.Wrap(usererr.KindUsage, err, "run 'k2 --help' for the list of commands")
	}
	return err
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "k2",
		Short: "Kubernetes 2.0: a whole cluster as an artifact",
		Long: `k2 builds a whole Kubernetes cluster from a K8sfile into a reproducible OCI
artifact, shares it through any OCI registry, and deploys the same digest to
every environment with provider plugins and an embedded control plane whose
datastore is SQLite (etcd optional).

Start here:
  k2 build -t hello:v1 examples/hello     build an artifact from a K8sfile
  k2 inspect hello:v1                     see what it holds
  k2 deploy hello:v1 --provider local     run it: k2 server on SQLite + agents
  k2 install                              or all of it interactively, in the terminal
  k2 status                               machines, nodes, apps, health
  k2 push localhost:5000/hello:v1         share it through a registry
  k2 destroy default --yes                delete the machines again

Environment:
  K2_HOME          where k2 keeps its store, config and state (default ~/.k2)
  K2_PLUGIN_PATH   extra directories searched for k2-provider-<name> plugins
  NO_COLOR         disable colour (k2 install then draws without it)

Exit codes: 0 ok, 1 failure, 2 usage, 3 invalid K8sfile or config,
4 provider error, 5 registry or auth error, 130 interrupted.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Annotations[annotationOIsFile] != "" {
				return nil
			}
			_, err := g.format()
			return err
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return usererr.Wrap(usererr.KindUsage, err, "see --help")
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.outFlag, "output", "o", "text", "output format: text or json")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only results and errors")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "print debug logs")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format on stderr: text or json")
	pf.StringVar(&g.home, "home", defaultHome(), "k2's home directory ($K2_HOME)")

	root.AddCommand(newVersionCmd(g))
	root.AddCommand(artifactCommands(g)...)
	root.AddCommand(serverCommands(g)...)
	root.AddCommand(pluginCommands(g)...)
	root.AddCommand(deployCommands(g)...)
	root.AddCommand(appCommands(g)...)
	root.AddCommand(newInitCmd(g), newOSCmd(g))
	return root
}

// annotationOIsFile marks a command where -o may name an output file
// (k2 backup -o FILE) instead of the output format.
const annotationOIsFile = "k2.dev/o-is-file"

// exactArgs is cobra.ExactArgs with a usage-kind error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usererr.Wrap(usererr.KindUsage, err, "see '"+cmd.CommandPath()+" --help'")
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with a usage-kind error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.RangeArgs(min, max)(cmd, args); err != nil {
			return usererr.Wrap(usererr.KindUsage, err, "see '"+cmd.CommandPath()+" --help'")
		}
		return nil
	}
}
