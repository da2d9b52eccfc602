package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"k2.dev/k2/state"
)

// ResumeMode says whether Begin continues an earlier deployment.
type ResumeMode int

const (
	// ResumeAuto continues env's latest deployment if it was killed or
	// interrupted (result running or interrupted) and has the same op and
	// artifact ref; otherwise it starts a new one. What `k2 deploy` does.
	ResumeAuto ResumeMode = iota
	// ResumeRequired continues env's latest deployment unless it succeeded
	// or was rolled back, and fails if there is none. What `k2 resume` does.
	ResumeRequired
	// ResumeNever always starts a new deployment.
	ResumeNever
)

// BeginOptions are the inputs of Begin. Env is required.
type BeginOptions struct {
	Env string
	Op  state.Op // default deploy
	// ArtifactRef is the reference as the user gave it; digest comes later.
	ArtifactRef string
	// Command is shown to whoever finds the environment locked.
	Command string
	// Source is recorded with a new deployment: the environment a
	// promotion comes from, the deployment a rollback restores.
	Source string
	Resume ResumeMode
	Logger *slog.Logger
}

// Session is a deployment in progress: the environment's lock is held and
// the deployment is recorded. End it with Finish.
type Session struct {
	State *State
	// Resumed: the deployment was started by an earlier, interrupted run.
	Resumed bool
	lock    *state.Lock
	store   *state.Store
}

// ErrNothingToResume means ResumeRequired found no unfinished deployment.
var ErrNothingToResume = errors.New("nothing to resume")

// Begin locks env and starts a deployment, or picks up an interrupted one
// per o.Resume. A lock held by a live process is a *state.LockedError.
func Begin(ctx context.Context, s *state.Store, o BeginOptions) (*Session, error) {
	if o.Op == "" {
		o.Op = state.OpDeploy
	}
	env, err := s.GetEnv(ctx, o.Env)
	if err != nil {
		return nil, UserError(err)
	}
	lock, err := s.Lock(ctx, o.Env, o.Command)
	if err != nil {
		return nil, UserError(err)
	}
	ss := &Session{lock: lock, store: s}
	fail := func(err error) (*Session, error) {
		lock.Release(ctx)
		return nil, err
	}

	var dep *state.Deployment
	last, err := s.LatestDeployment(ctx, o.Env)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return fail(err)
	}
	switch o.Resume {
	case ResumeAuto:
		if last != nil && (last.Result == state.Running || last.Result == state.Interrupted) &&
			last.Op == o.Op && (o.ArtifactRef == "" || last.ArtifactRef == o.ArtifactRef) {
			dep = last
		}
	case ResumeRequired:
		if last == nil || last.Result == state.Succeeded || last.Result == state.RolledBack {
			return fail(fmt.Errorf("environment %q: %w: its last deployment finished; run 'k2 deploy' to start a new one", o.Env, ErrNothingToResume))
		}
		dep = last
	}
	if dep != nil {
		ss.Resumed = true
		if dep.Result != state.Running {
			if err := s.FinishDeployment(ctx, dep.ID, state.Running, ""); err != nil {
				return fail(err)
			}
			dep.Result = state.Running
		}
	} else {
		dep, err = s.BeginDeployment(ctx, state.Deployment{Env: o.Env, Op: o.Op, ArtifactRef: o.ArtifactRef, Source: o.Source})
		if err != nil {
			return fail(err)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ss.State = &State{Store: s, Env: env, Deployment: dep, Log: log.With("env", o.Env, "deployment", dep.ID)}
	return ss, nil
}

// Finish records the deployment's result from runErr (nil: succeeded; a
// cancelled context: interrupted; rolledBack: rolled back; else failed)
// and releases the lock. It runs even after Ctrl-C.
func (ss *Session) Finish(ctx context.Context, runErr error, rolledBack bool) error {
	ctx = context.WithoutCancel(ctx)
	res, msg := state.Succeeded, ""
	switch {
	case runErr == nil:
	case rolledBack:
		res, msg = state.RolledBack, runErr.Error()
	case errors.Is(runErr, context.Canceled):
		res, msg = state.Interrupted, runErr.Error()
	default:
		res, msg = state.Failed, runErr.Error()
	}
	err := ss.store.FinishDeployment(ctx, ss.State.Deployment.ID, res, msg)
	ss.State.Deployment.Result = res
	return errors.Join(err, ss.lock.Release(ctx))
}
