package engine

import (
	"context"
	"errors"
	"fmt"

	"k2.dev/k2/state"
)

// ErrRolledBack is the run error a deployment rolled back on request is
// recorded with.
var ErrRolledBack = errors.New("rolled back on request")

// RollBack undoes what st.Deployment's earlier runs did, without running
// any step: it restores the journaled outputs of the steps recorded as done
// (Resumer), then runs Cleanup of every step the journal shows reached
// (started, done or failed), in reverse, as Run does after a failure with
// Rollback set. It is how a failed or interrupted deployment is rolled back
// after the fact (k2 install's "roll back" choice).
func (r *Runner) RollBack(ctx context.Context, st *State, steps []Step) error {
	if st.Deployment == nil || st.Env == nil {
		return errors.New("rolling back: State needs Env and Deployment")
	}
	if st.Store == nil {
		st.Store = r.Store
	}
	if st.Log == nil {
		st.Log = r.logger()
	}
	var reached []int
	for i, s := range steps {
		rec, err := r.Store.Step(ctx, st.Deployment.ID, s.Name(), "")
		if errors.Is(err, state.ErrNotFound) {
			continue
		}
		if err != nil {
			return &StepError{Step: s.Name(), Err: err}
		}
		if rec.State == state.StepCleaned {
			continue
		}
		if res, ok := s.(Resumer); ok && rec.State == state.StepDone {
			if err := res.Resume(ctx, st, rec.Output); err != nil {
				return &StepError{Step: s.Name(), Err: fmt.Errorf("resuming from the journal: %w", err)}
			}
		}
		reached = append(reached, i)
	}
	r.cleanup(ctx, st, steps, reached)
	return nil
}
