package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"k2.dev/k2/artifact"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/state"
)

// ArtifactDeploy is one deploy of an opened artifact with a launched
// provider, as `k2 deploy`, `upgrade`, `resume` and `install` run it.
// Env, Artifact, Client and Steps are required.
type ArtifactDeploy struct {
	Env string
	// Provider creates the environment with it when it does not exist yet
	// (and must match it if it does).
	Provider string
	Op       state.Op // default deploy
	Resume   ResumeMode
	// Artifact is the artifact to deploy; ArtifactRef the reference the
	// user gave (recorded in the history), default Artifact.Ref.
	Artifact    *artifact.Artifact
	ArtifactRef string
	// Client is the environment's launched provider; its capabilities
	// check the plan.
	Client Describer
	// ValuesFile and Sets are ARG values from --values and --set (see
	// ReadValuesFile and ParseSets); Sets win.
	ValuesFile map[string]string
	Sets       map[string]string
	// Command is shown to whoever finds the environment locked.
	Command string
	// Source: see DeployOptions.
	Source string
	// CheckPlan, if set, refuses a plan the environment cannot take from
	// where it is (cluster.CheckPlan: fewer servers, another datastore).
	CheckPlan func(ctx context.Context, p *Plan) error
	// Steps returns the steps after the plan (cluster.Steps).
	Steps func(st *State) []Step
	// Rollback, RollbackOnly, OnEvent, Logger: see DeployOptions.
	Rollback     bool
	RollbackOnly bool
	OnEvent      func(Event)
	Logger       *slog.Logger
}

// DeployArtifact asks o.Client for its capabilities and runs Deploy with a
// plan of o.Artifact for the environment (NewPlan with o's values).
func DeployArtifact(ctx context.Context, s *state.Store, o ArtifactDeploy) (*DeployResult, error) {
	if o.Artifact == nil || o.Client == nil {
		return nil, errors.New("deploying: Artifact and Client are required")
	}
	desc, err := o.Client.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		return nil, err
	}
	ref := o.ArtifactRef
	if ref == "" {
		ref = o.Artifact.Ref
	}
	digest := o.Artifact.Descriptor.Digest.String()
	return Deploy(ctx, s, DeployOptions{
		Env: o.Env, Provider: o.Provider, Op: o.Op, Resume: o.Resume,
		ArtifactRef: ref, ArtifactDigest: digest, Command: o.Command, Source: o.Source,
		Plan: func(ctx context.Context, env *state.Environment) (*Plan, error) {
			p, err := NewPlan(PlanOptions{
				Env: env, ArtifactRef: ref, ArtifactDigest: digest, Config: o.Artifact.Config,
				ValuesFile: o.ValuesFile, Sets: o.Sets, Capabilities: &desc.Capabilities,
			})
			if err == nil && o.CheckPlan != nil {
				err = o.CheckPlan(ctx, p)
			}
			if err != nil {
				return nil, err
			}
			return p, nil
		},
		Steps:    o.Steps,
		Rollback: o.Rollback, RollbackOnly: o.RollbackOnly,
		OnEvent: o.OnEvent, Logger: o.Logger,
	})
}

// Unfinished is an environment's deployment that can be resumed.
type Unfinished struct {
	Deployment *state.Deployment
	// Plan is the plan its journal holds; nil if its plan step never
	// finished.
	Plan *Plan
}

// Sets returns the ARG values the deployment resolved, to pass again as
// --set, as `k2 resume` does: a deploy started with --set resumes with the
// same values, though neither the environment nor the artifact has them.
func (u *Unfinished) Sets() map[string]string {
	out := map[string]string{}
	for k, v := range u.Deployment.Values {
		out[k] = v
	}
	if len(out) == 0 && u.Plan != nil {
		for _, v := range u.Plan.Values {
			out[v.Name] = v.Value
		}
	}
	return out
}

// FindUnfinished returns env's latest deployment if it can be resumed (it
// neither succeeded nor was rolled back), with its journaled plan; an error
// wrapping ErrNothingToResume otherwise.
func FindUnfinished(ctx context.Context, s *state.Store, env string) (*Unfinished, error) {
	last, err := s.LatestDeployment(ctx, env)
	if errors.Is(err, state.ErrNotFound) {
		if _, err := s.GetEnv(ctx, env); err != nil {
			return nil, UserError(err)
		}
		return nil, fmt.Errorf("environment %q: %w: it was never deployed; run 'k2 deploy' or 'k2 install'", env, ErrNothingToResume)
	}
	if err != nil {
		return nil, err
	}
	if last.Result == state.Succeeded || last.Result == state.RolledBack || last.Op == state.OpDestroy {
		return nil, fmt.Errorf("environment %q: %w: its last %s %s; run 'k2 deploy' or 'k2 install' to start a new one", env, ErrNothingToResume, last.Op, last.Result)
	}
	u := &Unfinished{Deployment: last}
	rec, err := s.Step(ctx, last.ID, (&PlanStep{}).Name(), "")
	switch {
	case errors.Is(err, state.ErrNotFound):
	case err != nil:
		return nil, err
	case rec.State == state.StepDone && len(rec.Output) > 0:
		var p Plan
		if err := json.Unmarshal(rec.Output, &p); err != nil {
			return nil, fmt.Errorf("reading the journaled plan of %s: %w", last.ID, err)
		}
		u.Plan = &p
	}
	return u, nil
}
