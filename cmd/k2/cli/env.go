package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/promote"
	"k2.dev/k2/state"
)

func newEnvCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Create, list, show and change environments",
		Long: `An environment is a named place a cluster is deployed to: a provider, its
configuration, and the ARG values every deploy there uses. The same artifact
digest is promoted from one environment to the next.

ARG values are resolved at deploy time, lowest to highest:
  the K8sfile's ARG default < the environment's values < --values file < --set

Environments live in $K2_HOME/state.db.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newEnvCreateCmd(g), newEnvLsCmd(g), newEnvShowCmd(g), newEnvSetCmd(g), newEnvUnlockCmd(g), newEnvDiffCmd(g))
	return cmd
}

func newEnvCreateCmd(g *globals) *cobra.Command {
	var o engine.EnvCreateOptions
	cmd := &cobra.Command{
		Use:   "create <name> --provider <provider>",
		Short: "Create an environment",
		Example: `  k2 env create dev --provider local
  k2 env create prod --provider metal --provider-config metal.yaml --set replicas=3
  k2 env create staging --provider libvirt --values staging.yaml`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if _, err := g.format(); err != nil {
				return err
			}
			if o.Provider == "" {
				return usererr.Usage("--provider is required; e.g. k2 env create %s --provider local", o.Name)
			}
			create := func(ctx context.Context, s *state.Store) (*state.Environment, error) {
				return engine.CreateEnv(ctx, s, o)
			}
			return report(cmd.Context(), g, g.stateDB, create, func(w io.Writer, e *state.Environment) error {
				_, err := fmt.Fprintf(w, "created environment %s (provider %s)\n", e.Name, e.Provider)
				return err
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Provider, "provider", "", "provider plugin that makes the machines: local, libvirt, metal, aws… (required)")
	fl.StringArrayVar(&o.Sets, "set", nil, "ARG value key=value (repeatable); wins over --values")
	fl.StringVar(&o.ValuesFile, "values", "", "YAML or JSON file of ARG values (replicas: 3)")
	fl.StringVar(&o.ProviderConfigFile, "provider-config", "", "YAML or JSON file of provider settings")
	fl.StringVar(&o.Registry, "registry", "", "registry (host[:port][/prefix]) promotions to this environment copy the artifact to first")
	return cmd
}

func newEnvLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List environments",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list := func(ctx context.Context, s *state.Store) ([]state.Environment, error) { return s.ListEnvs(ctx) }
			return report(cmd.Context(), g, g.stateDB, list, func(w io.Writer, envs []state.Environment) error {
				if len(envs) == 0 {
					_, err := fmt.Fprintln(w, "no environments; create one with 'k2 env create <name> --provider local'")
					return err
				}
				t := output.Table(w)
				fmt.Fprintln(t, "NAME\tPROVIDER\tVALUES\tCREATED")
				for _, e := range envs {
					fmt.Fprintf(t, "%s\t%s\t%d\t%s\n", e.Name, e.Provider, len(e.Values), e.CreatedAt.Format(time.RFC3339))
				}
				return t.Flush()
			})
		},
	}
}

func newEnvShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show <name>",
		Short: "Show an environment: provider, values, machines, last deployment, lock",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			describe := func(ctx context.Context, s *state.Store) (*engine.EnvDetail, error) {
				return engine.DescribeEnv(ctx, s, args[0])
			}
			return report(cmd.Context(), g, g.stateDB, describe, printEnv)
		},
	}
}

func printEnv(w io.Writer, d *engine.EnvDetail) error {
	t := output.Table(w)
	fmt.Fprintf(t, "Name:\t%s\n", d.Name)
	fmt.Fprintf(t, "Provider:\t%s\n", d.Provider)
	if d.ProviderConfigRef != "" {
		fmt.Fprintf(t, "Provider config:\t%s\n", d.ProviderConfigRef)
	}
	if d.Registry != "" {
		fmt.Fprintf(t, "Registry:\t%s\n", d.Registry)
	}
	fmt.Fprintf(t, "Created:\t%s\n", d.CreatedAt.Format(time.RFC3339))
	fmt.Fprintf(t, "Updated:\t%s\n", d.UpdatedAt.Format(time.RFC3339))
	if d.Lock != nil {
		note := ""
		if d.Lock.Stale {
			note = " (stale: the process is gone)"
		}
		fmt.Fprintf(t, "Locked by:\tpid %d on %s (%s) since %s%s\n", d.Lock.PID, d.Lock.Host, d.Lock.Command, d.Lock.Since.Format(time.RFC3339), note)
	}
	if d.Last != nil {
		fmt.Fprintf(t, "Last deployment:\t%s %s %s (%s)\n", d.Last.ID, d.Last.Op, artifactOf(d.Last), d.Last.Result)
	}
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Values:")
	if len(d.Values) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, k := range state.SortedKeys(d.Values) {
		fmt.Fprintf(w, "  %s=%s\n", k, d.Values[k])
	}
	fmt.Fprintln(w, "Gates:")
	gates := promote.Describe(d.Policy)
	if len(gates) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, g := range gates {
		fmt.Fprintf(w, "  %s\n", g)
	}
	if len(d.Approvals) > 0 {
		fmt.Fprintln(w, "Approvals:")
		for _, a := range d.Approvals {
			c := ""
			if a.Comment != "" {
				c = " (" + a.Comment + ")"
			}
			fmt.Fprintf(w, "  %s by %s at %s%s\n", a.Digest, a.Actor, a.ApprovedAt.Format(time.RFC3339), c)
		}
	}
	fmt.Fprintln(w, "Machines:")
	if len(d.Machines) == 0 {
		_, err := fmt.Fprintln(w, "  (none)")
		return err
	}
	t = output.Table(w)
	fmt.Fprintln(t, "  NAME\tPOOL\tROLE\tSTATE\tPROVIDER ID\tADDRESSES")
	for _, m := range d.Machines {
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Pool, m.Role, m.State, m.ProviderID, strings.Join(m.Addresses, ","))
	}
	return t.Flush()
}

func artifactOf(d *state.Deployment) string {
	switch {
	case d.ArtifactRef != "" && d.ArtifactDigest != "" && !strings.HasSuffix(d.ArtifactRef, "@"+d.ArtifactDigest):
		return d.ArtifactRef + "@" + d.ArtifactDigest
	case d.ArtifactRef != "":
		return d.ArtifactRef
	case d.ArtifactDigest != "":
		return d.ArtifactDigest
	}
	return "-"
}

func newEnvSetCmd(g *globals) *cobra.Command {
	var ps promote.Settings
	var registry, providerConfig string
	cmd := &cobra.Command{
		Use:   "set <name> [key=value|key- ...] [--gate …] [--policy FILE] [--registry R] [--provider-config FILE]",
		Short: "Set an environment's ARG values, promotion gates, registry or provider config",
		Long: `Set ARG values stored with an environment; every later deploy there uses
them (a --values file or --set on the deploy still wins). key- removes a value.

--gate sets the gates a promotion to this environment must pass (kept in
$K2_HOME/state.db); a refused promotion names the gate and changes nothing:
  healthy=DURATION   the source environment has been healthy (every node and
                     App Ready) for at least this long
  signed-by=FILE     the artifact carries a valid signature by this public key
                     (repeat for several keys: any of them will do)
  approval           someone ran 'k2 approve <env> <digest>' for the digest
  NAME-              removes gate NAME; none removes every gate
The signature and approval gates also guard 'k2 deploy' and 'k2 upgrade' of
the environment, the signature gate 'k2 rollback'.

--policy FILE replaces every gate with a YAML or JSON file's:
  healthyFor: 10m
  signedBy: [keys/release.pub]    # relative to the file
  approval: true

--registry sets where promotions to this environment copy the artifact (and
its signatures) first: host[:port][/prefix]; --registry "" removes it.

--provider-config FILE replaces the provider settings 'k2 env create' stored
(an inventory path, a libvirt URI, a registry to forward): later deploys,
status, resume and destroy use them; machines already made stay as they are.`,
		Example: `  k2 env set prod replicas=5 domain=example.test
  k2 env set prod domain-
  k2 env set prod --gate healthy=10m --gate signed-by=release.pub --gate approval
  k2 env set prod --registry registry.prod.example:5000/k2
  k2 env set staging --policy staging-policy.yaml
  k2 env set lab --provider-config metal.yaml`,
		Args: rangeArgs(1, 1<<20),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := g.format(); err != nil {
				return err
			}
			if cmd.Flags().Changed("registry") {
				ps.Registry = &registry
			}
			if len(args) < 2 && ps.IsZero() && providerConfig == "" {
				return usererr.Usage("nothing to set; give key=value, key-, --gate, --policy, --registry or --provider-config (see 'k2 env set --help')")
			}
			set := func(ctx context.Context, s *state.Store) (e *state.Environment, err error) {
				if len(args) > 1 {
					if e, err = engine.SetEnvValues(ctx, s, args[0], args[1:]); err != nil {
						return nil, err
					}
				}
				if !ps.IsZero() {
					if e, err = promote.Configure(ctx, s, args[0], ps); err != nil {
						return nil, err
					}
				}
				if providerConfig != "" {
					if e, err = engine.SetProviderConfig(ctx, s, args[0], providerConfig); err != nil {
						return nil, err
					}
				}
				return e, nil
			}
			return report(cmd.Context(), g, g.stateDB, set, func(w io.Writer, e *state.Environment) error {
				for _, k := range state.SortedKeys(e.Values) {
					fmt.Fprintf(w, "%s=%s\n", k, e.Values[k])
				}
				if providerConfig != "" {
					fmt.Fprintf(w, "provider config: %s\n", e.ProviderConfigRef)
				}
				if !ps.IsZero() {
					if e.Registry != "" {
						fmt.Fprintf(w, "registry: %s\n", e.Registry)
					}
					gates := promote.Describe(e.Policy)
					if len(gates) == 0 {
						gates = []string{"no gates"}
					}
					for _, g := range gates {
						fmt.Fprintf(w, "gate %s\n", g)
					}
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&ps.Gates, "gate", nil, "promotion gate: healthy=DURATION, signed-by=KEY.pub, approval, NAME- (repeatable)")
	fl.StringVar(&ps.PolicyFile, "policy", "", "YAML or JSON file replacing every gate (healthyFor, signedBy, approval)")
	fl.StringVar(&registry, "registry", "", "registry promotions to this environment copy to (\"\" removes it)")
	fl.StringVar(&providerConfig, "provider-config", "", "YAML or JSON file replacing the environment's provider settings")
	return cmd
}

func newEnvUnlockCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "unlock <name>",
		Short: "Remove an environment's deploy lock left by a process on another host",
		Long: `A deploy holds its environment's lock while it runs. A lock left by a killed
process on this host is taken over by the next deploy on its own; a lock held
from another host (a shared $K2_HOME) cannot be checked, so once you know that
process is gone, remove it with this command.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			unlock := func(ctx context.Context, s *state.Store) (map[string]any, error) {
				if _, err := s.GetEnv(ctx, args[0]); err != nil {
					return nil, engine.UserError(err)
				}
				if err := s.ForceUnlock(ctx, args[0]); err != nil {
					return nil, err
				}
				return map[string]any{"env": args[0], "unlocked": true}, nil
			}
			return report(cmd.Context(), g, g.stateDB, unlock, func(w io.Writer, _ map[string]any) error {
				_, err := fmt.Fprintf(w, "unlocked environment %s\n", args[0])
				return err
			})
		},
	}
}
