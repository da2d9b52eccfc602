package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// PlanStep is the first step of a deployment: it puts the plan into State
// and journals it, so that a resumed deployment finishes with the plan it
// started with (the same machines and values), even if the environment's
// values changed in between; a difference is logged.
type PlanStep struct {
	Plan *Plan
}

var _ Resumer = (*PlanStep)(nil)

// Name names the step in the journal.
func (s *PlanStep) Name() string { return "plan" }

// Run records the plan in the deployment's state.
func (s *PlanStep) Run(_ context.Context, st *State) error {
	if s.Plan == nil {
		return fmt.Errorf("no plan")
	}
	st.Plan = s.Plan
	return nil
}

// Cleanup has nothing to undo.
func (s *PlanStep) Cleanup(context.Context, *State) {}

// Output is the plan, journaled.
func (s *PlanStep) Output(st *State) (any, error) { return st.Plan, nil }

// Resume restores the plan from the journal.
func (s *PlanStep) Resume(_ context.Context, st *State, out json.RawMessage) error {
	var p Plan
	if err := json.Unmarshal(out, &p); err != nil {
		return err
	}
	if s.Plan != nil && (!slices.Equal(p.Machines, s.Plan.Machines) || !slices.Equal(p.Values, s.Plan.Values)) {
		st.Log.Warn("resuming with the plan the interrupted deployment started with; the current values give a different plan, deploy again afterwards to apply them")
	}
	st.Plan = &p
	return nil
}
