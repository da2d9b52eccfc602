package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"k8s.io/client-go/rest"

	"k2.dev/k2/artifact"
	"k2.dev/k2/artifact/sign"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/host"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/apply"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/promote"
	"k2.dev/k2/state"
)

// DefaultEnv is the environment k2 deploy uses without --env.
const DefaultEnv = "default"

// defaultReadyTimeout bounds each readiness wait of a deploy.
const defaultReadyTimeout = 5 * time.Minute

type deployFlags struct {
	env        string
	provider   string
	sets       []string
	valuesFile string
	dryRun     bool
	rollback   bool
	timeout    time.Duration
	pullGrace  time.Duration
	remote     remoteFlags
	// restore is a backup the first server starts from (k2 migrate).
	restore string
	// source is recorded with the deployment (promote: the source env;
	// rollback: the deployment restored).
	source string
	// verifyKeys: public key files a signature must verify with.
	verifyKeys []string
}

// setValues makes vals win over every other value of the deploy, as --set
// does: rollback and resume replay a recorded deployment's values.
func (d *deployFlags) setValues(vals map[string]string) {
	for _, k := range state.SortedKeys(vals) {
		d.sets = append(d.sets, k+"="+vals[k])
	}
}

func (d *deployFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&d.env, "env", DefaultEnv, "environment to deploy to (see 'k2 env ls')")
	fl.StringVar(&d.provider, "provider", "", "provider of an environment not created yet (local, libvirt, metal, aws…); must match an existing one's")
	fl.StringArrayVar(&d.sets, "set", nil, "ARG value key=value (repeatable); wins over --values and the environment's values")
	fl.StringVar(&d.valuesFile, "values", "", "YAML or JSON file of ARG values")
	fl.BoolVar(&d.dryRun, "dry-run", false, "print the plan (values, machines, layers) and change nothing")
	fl.StringArrayVar(&d.verifyKeys, "verify-key", nil, "require a valid signature by this public key (repeatable: any of them); see 'k2 verify'")
	d.remote.register(cmd)
}

// registerWait adds the flags of the readiness waits.
func (d *deployFlags) registerWait(cmd *cobra.Command) {
	addWaitFlags(cmd, &d.timeout, &d.pullGrace)
}

// addWaitFlags adds --timeout and --pull-grace, the bounds of a deploy's
// readiness waits, to cmd.
func addWaitFlags(cmd *cobra.Command, timeout, pullGrace *time.Duration) {
	fl := cmd.Flags()
	fl.DurationVar(timeout, "timeout", defaultReadyTimeout, "how long to wait for the control plane, the nodes and each layer to be ready")
	fl.DurationVar(pullGrace, "pull-grace", apply.DefaultPullGrace,
		"how long a layer's image pulls may keep failing before the deploy fails (it stays resumable)")
}

func newDeployCmd(g *globals) *cobra.Command {
	var d deployFlags
	cmd := &cobra.Command{
		Use:   "deploy <ref> [--env <env>] [--provider <provider>]",
		Short: "Deploy an artifact to an environment",
		Long: `Deploy a cluster artifact to an environment: resolve its ARGs for the
environment (ARG default < environment values < --values < --set), expand
its MACHINES into machine requests and check them against the provider's
capabilities, then create the machines, start the control plane (k2 server
on SQLite), join the workers (k2 agent) and apply the layers in order:
manifests and Apps with server-side apply (objects without apiVersion are
resolved to the server's stable version), charts with Helm.

Every step is journaled: if the deploy is killed or fails, run it again (or
'k2 resume') and it continues where it stopped, without duplicate machines.
--rollback deletes what a failed deploy made instead.

While a layer is not ready the progress line says which objects, pods and
containers are not and why. A deploy does not wait out what will not fix
itself: an image that cannot be pulled for --pull-grace, an invalid image
name, a container that keeps crashing (after its 3rd restart, with its last
log lines), a missing Secret or ConfigMap, a pod that needs a resource no
node has. It fails at once naming the pod, container, image and reason;
fix the cause and 'k2 resume' (k2 status shows where it stopped).

--dry-run prints the plan and changes nothing: no machine, no record.
A missing ARG or a pool the provider cannot make fails here, before
anything is created.`,
		Example: `  k2 build -t hello:v1 examples/hello
  k2 deploy hello:v1 --provider local
  k2 deploy localhost:5000/hello:v1 --env prod --set replicas=3 --dry-run -o json
  kubectl --kubeconfig "$(k2 kubeconfig --env prod --path)" get apps`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			if d.dryRun {
				p, err := planDeploy(cmd.Context(), g, &d, args[0])
				if err != nil {
					return err
				}
				return output.Render(g.stdout, f, p, func(w io.Writer) error { return p.WriteText(w) })
			}
			res, err := runDeploy(cmd.Context(), g, &d, args[0], state.OpDeploy, engine.ResumeAuto)
			return renderDeploy(g, f, res, err)
		},
	}
	d.register(cmd)
	cmd.Flags().BoolVar(&d.rollback, "rollback", false, "on failure, delete what this deploy made instead of keeping it for a resume")
	d.registerWait(cmd)
	return cmd
}

// deployInputs are what every deploy-like command opens first.
type deployInputs struct {
	state    *state.Store
	env      *state.Environment
	store    *artifact.Store
	artifact *artifact.Artifact
	provider *host.Client
}

func (in *deployInputs) Close() {
	if in.provider != nil {
		in.provider.Close()
	}
	in.state.Close()
}

// openDeploy opens the state, the environment (or the one a deploy would
// create), the artifact (pulling it if ref names a registry) and launches
// the environment's provider plugin. Callers Close the result.
func openDeploy(ctx context.Context, g *globals, d *deployFlags, ref string) (*deployInputs, error) {
	s, err := g.openState(ctx)
	if err != nil {
		return nil, err
	}
	in := &deployInputs{state: s}
	ok := false
	defer func() {
		if !ok {
			in.Close()
		}
	}()
	if in.env, _, err = engine.DeployEnv(ctx, s, d.env, d.provider); err != nil {
		return nil, err
	}
	if _, err := artifact.NormalizeRef(ref); err != nil {
		return nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("artifact reference %q: %w", ref, err), "build one with 'k2 build -t <ref> <dir>'")
	}
	if in.store, err = g.openStore(ctx); err != nil {
		return nil, err
	}
	if in.artifact, err = artifact.Open(ctx, in.store, ref, hasHost(ref), d.remote.options(g)); err != nil {
		return nil, err
	}
	if in.provider, err = g.launchProvider(ctx, in.env.Provider); err != nil {
		return nil, err
	}
	ok = true
	return in, nil
}

// runDeploy deploys (or upgrades, or resumes) ref to d.env.
func runDeploy(ctx context.Context, g *globals, d *deployFlags, ref string, op state.Op, resume engine.ResumeMode) (*engine.DeployResult, error) {
	in, err := openDeploy(ctx, g, d, ref)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	s, env, a, c := in.state, in.env, in.artifact, in.provider
	if err := checkGates(ctx, g, d, in, ref, op); err != nil {
		return nil, err
	}
	var prev map[string]string
	if op != state.OpDeploy {
		if prev, err = cluster.PreviousLayers(ctx, s, d.env); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	valuesFile := map[string]string{}
	if d.valuesFile != "" {
		if valuesFile, err = engine.ReadValuesFile(d.valuesFile); err != nil {
			return nil, err
		}
	}
	sets, _, err := engine.ParseSets(d.sets, false)
	if err != nil {
		return nil, err
	}
	log := g.logger()
	rest.SetDefaultWarningHandler(apiWarnings{log})
	return engine.DeployArtifact(ctx, s, engine.ArtifactDeploy{
		Env: d.env, Provider: d.provider, Op: op, Resume: resume,
		Artifact: a, ArtifactRef: ref, Client: c,
		ValuesFile: valuesFile, Sets: sets,
		Command: strings.Join(os.Args, " "), Source: d.source,
		// What the running control plane cannot become (3 servers back to
		// 1, etcd back to SQLite) is refused before anything changes.
		CheckPlan: func(ctx context.Context, p *engine.Plan) error { return cluster.CheckPlan(ctx, s, g.home, p) },
		Steps: cluster.Steps(cluster.Options{
			Home: g.home, K2Binary: self, Provider: c, ProviderConfig: sdk.Config(env.ProviderConfig),
			Artifact: a, Previous: prev, ReadyTimeout: d.timeout, PullGrace: d.pullGrace, Logger: log, Restore: d.restore,
		}),
		Rollback: d.rollback,
		OnEvent:  engine.NewPrinter(g.stderr),
		Logger:   log,
	})
}

// checkGates refuses a deploy the environment's signature or approval gate
// (or --verify-key) does not let in; it changes nothing.
func checkGates(ctx context.Context, g *globals, d *deployFlags, in *deployInputs, ref string, op state.Op) error {
	keys, err := loadPublicKeys(d.verifyKeys)
	if err != nil {
		return err
	}
	return gateCheck(ctx, g, in.state, in.store, in.env, ref, in.artifact.Descriptor.Digest.String(), op, keys, d.remote.options(g))
}

// gateCheck checks a deploy of digest (at ref) to env against env's gates
// and keys: nil, or promote.Refusal's error naming the gates that refused.
func gateCheck(ctx context.Context, g *globals, s *state.Store, store *artifact.Store, env *state.Environment, ref, digest string, op state.Op, keys []*sign.PublicKey, remote artifact.RemoteOptions) error {
	gates := &promote.Gates{State: s, Artifacts: store, Remote: remote, Home: g.home}
	res, err := gates.Check(ctx, promote.Subject{Env: env, Op: op, Digest: digest, Ref: ref, VerifyKeys: keys})
	if err != nil {
		return err
	}
	return promote.Refusal(env.Name, op, digest, ref, res)
}

// apiWarnings sends the API server's deprecation warnings to the debug log.
type apiWarnings struct{ log *slog.Logger }

func (w apiWarnings) HandleWarningHeader(code int, agent, text string) {
	w.log.Debug("api warning", "text", text)
}

// renderDeploy prints a deploy's result, or returns its error.
func renderDeploy(g *globals, f output.Format, res *engine.DeployResult, err error) error {
	var se *engine.StepError
	if errors.As(err, &se) && res != nil && res.Deployment.Result == state.Failed {
		env := res.Deployment.Env
		// The step's own kind (a provider's refusal: 4, a bad config: 3)
		// stays the exit code; the hint only says how to go on.
		kind := usererr.KindFailure
		if ue := (*usererr.Error)(nil); errors.As(err, &ue) {
			kind = ue.Kind
		}
		return usererr.Wrap(kind, err, fmt.Sprintf(
			"the deploy stopped there and is journaled: after the fix, run 'k2 resume %s' to continue from that step (or 'k2 destroy %s'); 'k2 status %s' shows it again", env, env, env))
	}
	if err != nil {
		return engine.UserError(err)
	}
	return output.Render(g.stdout, f, res, func(w io.Writer) error {
		dep := res.Deployment
		_, err := fmt.Fprintf(w, "%s of %s to %s: %s in %s (deployment %s)\nkubeconfig: %s\n",
			dep.Op, dep.ArtifactRef, dep.Env, state.Succeeded, time.Since(dep.StartedAt).Round(time.Millisecond), dep.ID,
			cluster.KubeconfigPath(g.home, dep.Env))
		return err
	})
}

// planDeploy computes the plan of deploying ref to d.env without changing
// anything: what --dry-run prints.
func planDeploy(ctx context.Context, g *globals, d *deployFlags, ref string) (*engine.Plan, error) {
	in, err := openDeploy(ctx, g, d, ref)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	return engine.PlanDeploy(ctx, in.state, engine.PlanRequest{
		Env: d.env, Provider: d.provider,
		ArtifactRef: ref, ArtifactDigest: in.artifact.Descriptor.Digest.String(), Config: in.artifact.Config,
		ValuesFile: d.valuesFile, Sets: d.sets,
	}, in.provider)
}
