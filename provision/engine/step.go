// Package engine runs k2's deployments: a plan (resolved ARGs and machine
// requests checked against a provider's capabilities) and an ordered list
// of journaled steps (in the style of packer's multistep) that the state
// store makes resumable after a crash or kill -9.
//
// A step is journaled before and after it runs. On the next run of the same
// deployment a step the journal records as done is skipped (an optional
// Resumer restores what it had put in State); a step recorded as started
// (killed mid-way) or failed runs again, so every step must be idempotent:
// it must find and reuse what an earlier attempt made (providers are
// idempotent by request id). Work inside a step that should not be redone
// item by item (one machine, one layer) goes through Do, which journals
// each item on its own.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"k2.dev/k2/state"
)

// Step is one stage of a deployment.
type Step interface {
	// Name identifies the step in the journal; unique within a run and
	// stable across k2 versions (it is how a resume finds the step).
	Name() string
	// Run does the step's work. It must be idempotent (see the package doc).
	Run(ctx context.Context, st *State) error
	// Cleanup undoes Run when the runner rolls back. It runs in reverse
	// order, also for steps done by an earlier, killed run, with a context
	// that is not cancelled by Ctrl-C but has a timeout. It must cope with a
	// Run that did only part of its work.
	Cleanup(ctx context.Context, st *State)
}

// Resumer is implemented by steps that leave results in State that later
// steps read. Output is journaled when Run succeeds; Resume puts it back
// into State instead of running the step again.
type Resumer interface {
	Output(st *State) (any, error)
	Resume(ctx context.Context, st *State, output json.RawMessage) error
}

// State is what the steps of one deployment share. It is typed: a step that
// produces something later steps need gets a field here.
type State struct {
	// Store is the state database; steps record machines and secrets in it.
	Store *state.Store
	// Env is the environment being deployed to.
	Env *state.Environment
	// Deployment is the deployment being run (its ID keys the journal).
	Deployment *state.Deployment
	// Plan is the resolved plan, set by the planning step or the caller.
	Plan *Plan
	// Log is the logger for steps; never nil while the runner runs.
	Log *slog.Logger

	// ServerURL is the control plane's API URL once it is up.
	ServerURL string

	rt *runtime // set by the Runner while a step runs
}

// runtime ties State to the running step for Do and Progress.
type runtime struct {
	r     *Runner
	step  string
	index int
	total int
}

// StepError reports the step (and machine or item, if any) that failed.
type StepError struct {
	Step    string
	Machine string // empty when the step failed as a whole
	Err     error
}

func (e *StepError) Error() string {
	if e.Machine != "" {
		return fmt.Sprintf("%s: %s: %v", e.Step, e.Machine, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }
