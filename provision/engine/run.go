package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"k2.dev/k2/state"
)

// DeployOptions are the inputs of Deploy. Env and Plan are required.
type DeployOptions struct {
	Env string
	// Provider creates the environment with this provider if it does not
	// exist yet (and must match it if it does).
	Provider    string
	Op          state.Op // default deploy
	ArtifactRef string
	// Digest is recorded with the deployment.
	ArtifactDigest string
	// Command is shown to whoever finds the environment locked.
	Command string
	// Source: the environment a promotion comes from, or the deployment a
	// rollback restores (recorded in the history).
	Source string
	Resume ResumeMode
	// Plan computes the plan for the (possibly just created) environment;
	// PlanDeploy or NewPlan with the right inputs.
	Plan func(ctx context.Context, env *state.Environment) (*Plan, error)
	// Steps returns the steps after the plan step, given the State they
	// will share (for example MachinesStep for the control plane, a
	// control-plane wait, MachinesStep for workers, apply steps).
	Steps func(st *State) []Step
	// Rollback, OnEvent, CleanupTimeout: see Runner.
	Rollback bool
	// RollbackOnly rolls back the deployment Begin picks up (with
	// ResumeRequired: env's unfinished one) instead of running it: Cleanup
	// of every step its journal reached, in reverse (Runner.RollBack); it
	// is then recorded as rolled back and Deploy returns no error.
	RollbackOnly   bool
	OnEvent        func(Event)
	CleanupTimeout time.Duration // 0 means DefaultCleanupTimeout
	Logger         *slog.Logger
}

// DeployResult is what Deploy reports.
type DeployResult struct {
	Deployment *state.Deployment `json:"deployment"`
	Plan       *Plan             `json:"plan"`
	Resumed    bool              `json:"resumed"`
}

// Deploy runs one deployment end to end: plans (before anything is
// created, not even the environment: a missing ARG or a capability mismatch
// fails here), creates the environment if needed and plans again for it, takes the environment's lock, starts or resumes the
// deployment, runs the plan step and o.Steps through a journaling Runner,
// records the result and releases the lock. The returned error is the
// run's (*StepError), or a user error from planning or locking.
func Deploy(ctx context.Context, s *state.Store, o DeployOptions) (*DeployResult, error) {
	env, exists, err := DeployEnv(ctx, s, o.Env, o.Provider)
	if err != nil {
		return nil, err
	}
	if !exists {
		// Plan once against the unsaved environment: a plan that fails
		// must not leave a new environment behind.
		if _, err := o.Plan(ctx, env); err != nil {
			return nil, err
		}
		if env, err = s.CreateEnv(ctx, state.Environment{Name: o.Env, Provider: o.Provider}); err != nil && !errors.Is(err, state.ErrExists) {
			return nil, UserError(err)
		} else if err != nil { // created by a concurrent deploy
			if env, err = s.GetEnv(ctx, o.Env); err != nil {
				return nil, UserError(err)
			}
		}
	}
	plan, err := o.Plan(ctx, env)
	if err != nil {
		return nil, err
	}
	ss, err := Begin(ctx, s, BeginOptions{Env: o.Env, Op: o.Op, ArtifactRef: o.ArtifactRef, Command: o.Command,
		Source: o.Source, Resume: o.Resume, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	vals := plan.ValueMap()
	if err := s.SetDeploymentValues(ctx, ss.State.Deployment.ID, vals); err != nil {
		return nil, errors.Join(err, ss.Finish(ctx, err, false))
	}
	ss.State.Deployment.Values, ss.State.Deployment.ValuesHash = vals, state.ValuesHash(vals)
	if o.ArtifactDigest != "" {
		if err := s.SetDeploymentDigest(ctx, ss.State.Deployment.ID, o.ArtifactDigest); err != nil {
			return nil, errors.Join(err, ss.Finish(ctx, err, false))
		}
		ss.State.Deployment.ArtifactDigest = o.ArtifactDigest
	}
	steps := []Step{&PlanStep{Plan: plan}}
	if o.Steps != nil {
		steps = append(steps, o.Steps(ss.State)...)
	}
	r := &Runner{Store: s, Logger: o.Logger, OnEvent: o.OnEvent, Rollback: o.Rollback, CleanupTimeout: o.CleanupTimeout}
	if o.RollbackOnly {
		err := r.RollBack(ctx, ss.State, steps)
		if err == nil {
			err = ss.Finish(ctx, ErrRolledBack, true)
		} else {
			err = errors.Join(err, ss.Finish(ctx, err, false))
		}
		return &DeployResult{Deployment: ss.State.Deployment, Plan: ss.State.Plan, Resumed: ss.Resumed}, err
	}
	runErr := r.Run(ctx, ss.State, steps)
	finErr := ss.Finish(ctx, runErr, runErr != nil && o.Rollback)
	res := &DeployResult{Deployment: ss.State.Deployment, Plan: ss.State.Plan, Resumed: ss.Resumed}
	if runErr != nil {
		return res, runErr
	}
	return res, finErr
}
