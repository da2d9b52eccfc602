package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
	"k2.dev/k2/tui"
	"k2.dev/k2/tui/backend"
)

type installFlags struct {
	resume    string
	keys      []string
	timeout   time.Duration
	pullGrace time.Duration
	remote    remoteFlags
}

func newInstallCmd(g *globals) *cobra.Command {
	var f installFlags
	cmd := &cobra.Command{
		Use:   "install [REF]",
		Short: "Install a cluster interactively, from an artifact to a running cluster",
		Long: `Install walks you through a deploy in the terminal: pick an artifact (type a
reference, pick one from the local store, or build a K8sfile directory),
an environment and a provider (providers that cannot make the artifact's
machines are shown with why), fill in the provider's settings and the
artifact's ARGs (checked by the provider as you go), review the plan exactly
as 'k2 deploy --dry-run' prints it, and watch the deploy: a row per step and
machine, the log on 'l'. A failure offers retry, roll back or resume later;
Ctrl-C asks before it stops, and a stopped deploy stays resumable with
'k2 install --resume ENV' (or 'k2 resume ENV'). It ends with the kubeconfig,
a kubectl command, the Apps' URLs and 'k2 status'. The environment's
signature and approval gates (and --verify-key) apply as they do to
'k2 deploy'.

It needs a terminal (80×24 or larger); NO_COLOR turns colours off. Without a
terminal, use 'k2 deploy REF --provider P --env E', which does the same.`,
		Example: `  k2 install
  k2 install hello:v1
  k2 install --verify-key cosign.pub
  k2 install --resume dev`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !isTerminal(g.stdin) || !isTerminal(g.stdout) {
				return usererr.Usage("k2 install needs a terminal; without one use 'k2 deploy REF --provider local --env dev' (see 'k2 deploy --help'), which does the same")
			}
			if f.resume != "" && len(args) > 0 {
				return usererr.Usage("give either REF or --resume ENV, not both")
			}
			ref := ""
			if len(args) == 1 {
				ref = args[0]
			}
			return runInstall(cmd.Context(), g, &f, ref)
		},
	}
	cmd.Flags().StringVar(&f.resume, "resume", "", "continue ENV's interrupted or failed deploy from its journal")
	cmd.Flags().StringArrayVar(&f.keys, "verify-key", nil, "require a valid signature by this public key (repeatable: any of them), as k2 deploy --verify-key; the artifact page shows the check")
	addWaitFlags(cmd, &f.timeout, &f.pullGrace)
	f.remote.register(cmd)
	return cmd
}

func runInstall(ctx context.Context, g *globals, f *installFlags, ref string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	keys, err := loadPublicKeys(f.keys)
	if err != nil {
		return err
	}
	r := lipgloss.NewRenderer(g.stdout)
	r.HasDarkBackground() // ask the terminal now, before the installer reads its input
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	opts := tui.Options{
		Ref: ref, Resume: f.resume, Renderer: r, In: g.stdin, Out: g.stdout,
		Backend: backend.Options{
			Home: g.home, Discover: g.discoverOptions(), Launch: g.launchOptions(), Remote: f.remote.options(g),
			Level: level, Command: strings.Join(os.Args, " "), Keys: keys,
			Steps: func(sr backend.StepsRequest) func(*engine.State) []engine.Step {
				// Client-side Kubernetes logs go to the log pane, not over the screen.
				rest.SetDefaultWarningHandler(apiWarnings{sr.Logger})
				klog.SetSlogLogger(sr.Logger)
				return func(st *engine.State) []engine.Step {
					var prev map[string]string
					if sr.Op != state.OpDeploy { // a resumed upgrade, as k2 resume runs it
						var err error
						if prev, err = cluster.PreviousLayers(context.Background(), st.Store, st.Env.Name); err != nil {
							sr.Logger.Warn("reading the layers of the last deploy; applying every layer", "err", err)
						}
					}
					return cluster.Steps(cluster.Options{
						Home: g.home, K2Binary: self, Provider: sr.Provider, ProviderConfig: sr.ProviderConfig,
						Artifact: sr.Artifact, Previous: prev, ReadyTimeout: f.timeout, PullGrace: f.pullGrace, Logger: sr.Logger,
					})(st)
				}
			},
			Status: func(ctx context.Context, s *state.Store, env string) (*backend.Status, error) {
				return installStatus(ctx, g, s, env)
			},
			Gates: func(ctx context.Context, s *state.Store, env *state.Environment, a *artifact.Artifact, op state.Op) error {
				store, err := g.openStore(ctx)
				if err != nil {
					return err
				}
				return gateCheck(ctx, g, s, store, env, a.Ref, a.Descriptor.Digest.String(), op, keys, f.remote.options(g))
			},
		},
	}
	summary, err := tui.Run(ctx, opts)
	if summary != "" {
		fmt.Fprint(g.stdout, summary)
	}
	return err
}

// installStatus is `k2 status env` for the installer's last page.
func installStatus(ctx context.Context, g *globals, s *state.Store, env string) (*backend.Status, error) {
	st, err := cluster.GetStatus(ctx, s, g.home, env)
	if err != nil {
		return nil, err
	}
	var text bytes.Buffer
	if err := writeStatus(&text, st); err != nil {
		return nil, err
	}
	out := &backend.Status{Kubeconfig: cluster.KubeconfigPath(g.home, env), Healthy: st.Healthy, Nodes: len(st.Nodes), Text: text.String()}
	for _, n := range st.Nodes {
		if n.Ready {
			out.NodesReady++
		}
	}
	for _, a := range st.Apps {
		out.Apps = append(out.Apps, backend.App{Namespace: a.Namespace, Name: a.Name, URL: a.URL, Ready: a.Ready})
	}
	return out, nil
}

func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
