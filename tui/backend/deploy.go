package backend

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k2.dev/k2/artifact"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// PlanRequest is a deploy as the review shows it: the same inputs as
// `k2 deploy REF --env Env --provider Provider --set … --dry-run`.
type PlanRequest struct {
	Env      string
	Provider string
	Artifact *artifact.Artifact
	Sets     map[string]string
}

// SetArgs returns r.Sets as --set arguments, sorted.
func (r PlanRequest) SetArgs() []string {
	out := make([]string, 0, len(r.Sets))
	for _, k := range slices.Sorted(maps.Keys(r.Sets)) {
		out = append(out, k+"="+r.Sets[k])
	}
	return out
}

// Plan computes the plan of r with the provider's capabilities, exactly as
// `k2 deploy --dry-run` does (engine.PlanDeploy).
func (b *Backend) Plan(ctx context.Context, r PlanRequest) (*engine.Plan, error) {
	s, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	c, err := b.Provider(ctx, r.Provider)
	if err != nil {
		return nil, err
	}
	return engine.PlanDeploy(ctx, s, engine.PlanRequest{
		Env: r.Env, Provider: r.Provider,
		ArtifactRef: r.Artifact.Ref, ArtifactDigest: r.Artifact.Descriptor.Digest.String(), Config: r.Artifact.Config,
		Sets: r.SetArgs(),
	}, c)
}

// Validate asks provider whether it accepts cfg for plan p.
func (b *Backend) Validate(ctx context.Context, provider string, cfg sdk.Config, p *engine.Plan) (sdk.Diagnostics, error) {
	c, err := b.Provider(ctx, provider)
	if err != nil {
		return nil, err
	}
	return engine.ValidateProvider(ctx, c, cfg, p)
}

// DeployRequest is a deploy the installer starts.
type DeployRequest struct {
	Env string
	// Provider and ProviderConfig create the environment when it does not
	// exist yet.
	Provider       string
	ProviderConfig sdk.Config
	Artifact       *artifact.Artifact
	// ArtifactRef is recorded in the history; default Artifact.Ref.
	ArtifactRef string
	// Op is the deployment's (default deploy; a resume passes the op of
	// the deployment it continues).
	Op   state.Op
	Sets map[string]string
	// Resume: ResumeAuto for a new deploy, ResumeRequired to retry or
	// resume the environment's unfinished one.
	Resume engine.ResumeMode
	// RollbackOnly rolls the unfinished deployment back instead.
	RollbackOnly bool
}

// Deploy starts r in the background (engine.Go): it checks the
// environment's gates, creates the environment if needed and runs
// engine.DeployArtifact with the cluster steps, holding the environment's
// lock.
func (b *Backend) Deploy(ctx context.Context, r DeployRequest) *engine.Running {
	return engine.Go(ctx, func(ctx context.Context, on func(engine.Event)) (*engine.DeployResult, error) {
		s, err := b.State(ctx)
		if err != nil {
			return nil, err
		}
		env, exists, err := engine.DeployEnv(ctx, s, r.Env, r.Provider)
		if err != nil {
			return nil, err
		}
		if r.Op == "" {
			r.Op = state.OpDeploy
		}
		if !r.RollbackOnly {
			if err := b.checkGates(ctx, s, env, r.Artifact, r.Op); err != nil {
				return nil, err
			}
		}
		if !exists {
			env, err = s.CreateEnv(ctx, state.Environment{Name: r.Env, Provider: r.Provider,
				ProviderConfig: []byte(r.ProviderConfig), ProviderConfigRef: "set in k2 install"})
			if err != nil {
				return nil, engine.UserError(err)
			}
		}
		c, err := b.Provider(ctx, env.Provider)
		if err != nil {
			return nil, err
		}
		return engine.DeployArtifact(ctx, s, engine.ArtifactDeploy{
			Env: r.Env, Provider: env.Provider, Op: r.Op, Resume: r.Resume, RollbackOnly: r.RollbackOnly,
			Artifact: r.Artifact, ArtifactRef: r.ArtifactRef, Client: c, Sets: r.Sets,
			Command: b.opts.Command,
			Steps: b.opts.Steps(StepsRequest{
				Op: r.Op, Provider: c, ProviderConfig: sdk.Config(env.ProviderConfig), Artifact: r.Artifact, Logger: b.logger,
			}),
			OnEvent: on, Logger: b.logger,
		})
	})
}

// CheckGates tells whether env's gates (and the keys given) let a in: nil,
// or the refusal naming the gates and what to do. env need not exist yet
// (a new one has no gates; the keys still apply).
func (b *Backend) CheckGates(ctx context.Context, env, provider string, a *artifact.Artifact) error {
	s, err := b.State(ctx)
	if err != nil {
		return err
	}
	e, _, err := engine.DeployEnv(ctx, s, env, provider)
	if err != nil {
		return err
	}
	return b.checkGates(ctx, s, e, a, state.OpDeploy)
}

func (b *Backend) checkGates(ctx context.Context, s *state.Store, env *state.Environment, a *artifact.Artifact, op state.Op) error {
	if b.opts.Gates == nil {
		return nil
	}
	return b.opts.Gates(ctx, s, env, a, op)
}

// Resumable is an environment's unfinished deployment, ready to resume.
type Resumable struct {
	*engine.Unfinished
	Env      *state.Environment
	Artifact *artifact.Artifact
}

// Unfinished finds env's unfinished deployment (engine.FindUnfinished) and
// opens the artifact it deploys, by digest.
func (b *Backend) Unfinished(ctx context.Context, env string) (*Resumable, error) {
	s, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	u, err := engine.FindUnfinished(ctx, s, env)
	if err != nil {
		return nil, engine.UserError(err)
	}
	e, err := s.GetEnv(ctx, env)
	if err != nil {
		return nil, engine.UserError(err)
	}
	ref := u.Deployment.ArtifactRef
	if d := u.Deployment.ArtifactDigest; d != "" {
		ref = pinned(ref, d)
	}
	a, err := b.OpenArtifact(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("opening the artifact of deployment %s: %w", u.Deployment.ID, err)
	}
	// Opened by digest, shown as the deploy named it.
	a.Ref = u.Deployment.ArtifactRef
	return &Resumable{Unfinished: u, Env: e, Artifact: a}, nil
}

// pinned returns ref pinned to digest: name@digest.
func pinned(ref, digest string) string {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name + "@" + digest
}

// Status reports env after its deploy, nil when the caller gave no Status.
func (b *Backend) Status(ctx context.Context, env string) (*Status, error) {
	if b.opts.Status == nil {
		return nil, nil
	}
	s, err := b.State(ctx)
	if err != nil {
		return nil, err
	}
	return b.opts.Status(ctx, s, env)
}
