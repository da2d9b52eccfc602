package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/provision/engine"
)

// DefaultEnv is the environment k2 deploy uses without --env.
const DefaultEnv = "default"

type deployFlags struct {
	env        string
	provider   string
	sets       []string
	valuesFile string
	dryRun     bool
	remote     remoteFlags
}

func (d *deployFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&d.env, "env", DefaultEnv, "environment to deploy to (see 'k2 env ls')")
	fl.StringVar(&d.provider, "provider", "", "provider of an environment not created yet (local, libvirt, metal, aws…); must match an existing one's")
	fl.StringArrayVar(&d.sets, "set", nil, "ARG value key=value (repeatable); wins over --values and the environment's values")
	fl.StringVar(&d.valuesFile, "values", "", "YAML or JSON file of ARG values")
	fl.BoolVar(&d.dryRun, "dry-run", false, "print the plan (values, machines, layers) and change nothing")
	d.remote.register(cmd)
}

func newDeployCmd(g *globals) *cobra.Command {
	var d deployFlags
	cmd := &cobra.Command{
		Use:   "deploy <ref> [--env <env>] [--provider <provider>]",
		Short: "Deploy an artifact to an environment",
		Long: `Deploy a cluster artifact to an environment: resolve its ARGs for the
environment (ARG default < environment values < --values < --set), expand
its MACHINES into machine requests and check them against the provider's
capabilities, then create the machines, start the control plane and apply
the layers.

--dry-run prints that plan and changes nothing: no machine, no record.
A missing ARG or a pool the provider cannot make fails here, before
anything is created.`,
		Example: `  k2 deploy localhost:5000/hello:v1 --provider local --dry-run
  k2 deploy localhost:5000/hello:v1 --env prod --set replicas=3 --dry-run -o json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			if !d.dryRun {
				return usererr.New(usererr.KindFailure,
					"k2 deploy: only --dry-run works in this build; creating machines, starting the control plane and applying layers are not wired into the command yet")
			}
			p, err := planDeploy(cmd.Context(), g, &d, args[0])
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, p, func(w io.Writer) error { return p.WriteText(w) })
		},
	}
	d.register(cmd)
	return cmd
}

// planDeploy opens the artifact (pulling it if ref names a registry), asks
// the environment's provider for its capabilities and computes the plan.
func planDeploy(ctx context.Context, g *globals, d *deployFlags, ref string) (*engine.Plan, error) {
	s, err := g.openState(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	env, _, err := engine.DeployEnv(ctx, s, d.env, d.provider)
	if err != nil {
		return nil, err
	}
	if _, err := artifact.NormalizeRef(ref); err != nil {
		return nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("artifact reference %q: %w", ref, err), "build one with 'k2 build -t <ref> <dir>'")
	}
	store, err := g.openStore(ctx)
	if err != nil {
		return nil, err
	}
	a, err := artifact.Open(ctx, store, ref, hasHost(ref), d.remote.options(g))
	if err != nil {
		return nil, err
	}
	plug, err := host.Find(g.discoverOptions(), env.Provider)
	if err != nil {
		return nil, err
	}
	c, err := host.Launch(ctx, plug, g.launchOptions())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return engine.PlanDeploy(ctx, s, engine.PlanRequest{
		Env: d.env, Provider: d.provider,
		ArtifactRef: ref, ArtifactDigest: a.Descriptor.Digest.String(), Config: a.Config,
		ValuesFile: d.valuesFile, Sets: d.sets,
	}, c)
}
