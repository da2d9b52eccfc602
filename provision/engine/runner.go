package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"k2.dev/k2/state"
)

// DefaultCleanupTimeout bounds the whole rollback.
const DefaultCleanupTimeout = 5 * time.Minute

// Runner runs steps for one deployment, journaling each in the state store.
// The zero value is not usable: Store is required.
type Runner struct {
	Store *state.Store
	// Logger; nil discards.
	Logger *slog.Logger
	// OnEvent receives progress events; nil drops them. It is called from
	// the runner's goroutine and, through Do and Progress, from whatever
	// goroutines the steps use, so it must be safe for concurrent use.
	OnEvent func(Event)
	// Rollback: when a step fails (or ctx is cancelled), run Cleanup of
	// every step reached so far, in reverse, including steps an earlier
	// run of this deployment completed. Without it the journal is left for
	// a resume.
	Rollback bool
	// CleanupTimeout bounds the rollback; 0 means DefaultCleanupTimeout.
	CleanupTimeout time.Duration
}

// Run runs steps in order for st.Deployment, skipping those its journal
// records as done. It returns nil when every step is done; otherwise a
// *StepError for the step that failed (wrapping context.Canceled when
// interrupted). st.Store, st.Deployment and st.Env must be set.
func (r *Runner) Run(ctx context.Context, st *State, steps []Step) error {
	if st.Deployment == nil || st.Env == nil {
		return errors.New("running steps: State needs Env and Deployment")
	}
	if st.Store == nil {
		st.Store = r.Store
	}
	if st.Log == nil {
		st.Log = r.logger()
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(steps))
	for _, s := range steps {
		if seen[s.Name()] {
			return fmt.Errorf("running steps: step %q appears twice", s.Name())
		}
		seen[s.Name()] = true
		names = append(names, s.Name())
	}
	if r.OnEvent != nil {
		r.OnEvent(Event{Kind: EventRunStarted, Time: time.Now(), Total: len(steps), Steps: names})
	}
	dep := st.Deployment.ID
	// Journal writes after a failure or Ctrl-C must still happen.
	bg := context.WithoutCancel(ctx)

	var reached []int
	var failure error
	for i, s := range steps {
		rt := &runtime{r: r, step: s.Name(), index: i + 1, total: len(steps)}
		st.rt = rt
		rec, err := r.Store.Step(ctx, dep, s.Name(), "")
		if err != nil && !errors.Is(err, state.ErrNotFound) {
			failure = &StepError{Step: s.Name(), Err: err}
			break
		}
		if rec != nil && rec.State == state.StepDone {
			if res, ok := s.(Resumer); ok {
				if err := res.Resume(ctx, st, rec.Output); err != nil {
					failure = &StepError{Step: s.Name(), Err: fmt.Errorf("resuming from the journal: %w", err)}
					break
				}
			}
			reached = append(reached, i)
			rt.emit(Event{Kind: EventStepSkipped, Attempt: rec.Attempt})
			continue
		}
		if err := ctx.Err(); err != nil {
			failure = &StepError{Step: s.Name(), Err: err}
			break
		}
		rec, err = r.Store.StepStarted(ctx, dep, s.Name(), "")
		if err != nil {
			failure = &StepError{Step: s.Name(), Err: err}
			break
		}
		reached = append(reached, i)
		start := time.Now()
		rt.emit(Event{Kind: EventStepStarted, Attempt: rec.Attempt})
		r.logger().Debug("step started", "deployment", dep, "step", s.Name(), "attempt", rec.Attempt)

		err = s.Run(ctx, st)
		var out json.RawMessage
		if err == nil {
			out, err = stepOutput(s, st)
		}
		if cerr := ctx.Err(); err != nil && cerr != nil && !errors.Is(err, cerr) {
			// Stopped under it: interrupted, however the step words its error.
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		if err != nil {
			serr := asStepError(s.Name(), err)
			if jerr := r.Store.StepFailed(bg, dep, s.Name(), "", serr.Error()); jerr != nil {
				r.logger().Error("journaling a failed step", "step", s.Name(), "err", jerr)
			}
			rt.emit(Event{Kind: EventStepFailed, Machine: serr.Machine, Err: serr, Error: serr.Error(), Elapsed: time.Since(start), Attempt: rec.Attempt})
			failure = serr
			break
		}
		if err := r.Store.StepDone(bg, dep, s.Name(), "", out); err != nil {
			// The work is done but not journaled: a resume runs it again,
			// which idempotent steps allow.
			failure = &StepError{Step: s.Name(), Err: err}
			break
		}
		rt.emit(Event{Kind: EventStepDone, Elapsed: time.Since(start), Attempt: rec.Attempt})
	}
	st.rt = nil
	if failure == nil {
		return nil
	}
	if r.Rollback {
		r.cleanup(ctx, st, steps, reached)
	}
	return failure
}

// cleanup runs Cleanup of the reached steps in reverse, with a context that
// survives the cancellation of ctx but not the timeout.
func (r *Runner) cleanup(ctx context.Context, st *State, steps []Step, reached []int) {
	timeout := r.CleanupTimeout
	if timeout <= 0 {
		timeout = DefaultCleanupTimeout
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	for j := len(reached) - 1; j >= 0; j-- {
		i := reached[j]
		s := steps[i]
		rt := &runtime{r: r, step: s.Name(), index: i + 1, total: len(steps)}
		st.rt = rt
		start := time.Now()
		rt.emit(Event{Kind: EventCleanupStarted})
		s.Cleanup(cctx, st)
		if err := r.Store.StepCleaned(cctx, st.Deployment.ID, s.Name(), ""); err != nil {
			r.logger().Error("journaling a cleanup", "step", s.Name(), "err", err)
		}
		rt.emit(Event{Kind: EventCleanupDone, Elapsed: time.Since(start)})
	}
	st.rt = nil
}

func stepOutput(s Step, st *State) (json.RawMessage, error) {
	res, ok := s.(Resumer)
	if !ok {
		return nil, nil
	}
	v, err := res.Output(st)
	if err != nil {
		return nil, fmt.Errorf("saving output: %w", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("saving output: %w", err)
	}
	return b, nil
}

func asStepError(step string, err error) *StepError {
	var se *StepError
	if errors.As(err, &se) && se.Step == step {
		return se
	}
	return &StepError{Step: step, Err: err}
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return r.Logger
}

func (rt *runtime) emit(e Event) {
	if rt == nil || rt.r.OnEvent == nil {
		return
	}
	e.Step, e.Index, e.Total = rt.step, rt.index, rt.total
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	rt.r.OnEvent(e)
}

// Progress reports a message about machine (empty: the step) from the
// running step. Safe from any goroutine; a no-op outside a run.
func (st *State) Progress(machine string, percent int, format string, args ...any) {
	st.rt.emit(Event{Kind: EventProgress, Machine: machine, Percent: percent, Message: fmt.Sprintf(format, args...)})
}

// Do runs fn for one item (a machine name, a layer) of the running step as
// its own journal entry. If an earlier run journaled the item as done, fn
// is not called and the journaled result is returned. A failure is a
// *StepError naming the item. Do may be called from several goroutines of
// one step at once.
func Do[T any](ctx context.Context, st *State, key string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	rt := st.rt
	if rt == nil {
		return zero, errors.New("engine.Do called outside a running step")
	}
	store, dep := rt.r.Store, st.Deployment.ID
	rec, err := store.Step(ctx, dep, rt.step, key)
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		return zero, &StepError{Step: rt.step, Machine: key, Err: err}
	}
	if rec != nil && rec.State == state.StepDone {
		var v T
		if len(rec.Output) > 0 {
			if err := json.Unmarshal(rec.Output, &v); err != nil {
				return zero, &StepError{Step: rt.step, Machine: key, Err: fmt.Errorf("reading journaled result: %w", err)}
			}
		}
		rt.emit(Event{Kind: EventItemSkipped, Machine: key, Attempt: rec.Attempt})
		return v, nil
	}
	rec, err = store.StepStarted(ctx, dep, rt.step, key)
	if err != nil {
		return zero, &StepError{Step: rt.step, Machine: key, Err: err}
	}
	start := time.Now()
	rt.emit(Event{Kind: EventItemStarted, Machine: key, Attempt: rec.Attempt})
	v, err := fn(ctx)
	bg := context.WithoutCancel(ctx)
	if err != nil {
		serr := &StepError{Step: rt.step, Machine: key, Err: err}
		if jerr := store.StepFailed(bg, dep, rt.step, key, err.Error()); jerr != nil {
			rt.r.logger().Error("journaling a failed item", "step", rt.step, "item", key, "err", jerr)
		}
		rt.emit(Event{Kind: EventItemFailed, Machine: key, Err: err, Error: err.Error(), Elapsed: time.Since(start), Attempt: rec.Attempt})
		return zero, serr
	}
	out, err := json.Marshal(v)
	if err != nil {
		return zero, &StepError{Step: rt.step, Machine: key, Err: fmt.Errorf("journaling result: %w", err)}
	}
	if err := store.StepDone(bg, dep, rt.step, key, out); err != nil {
		return zero, &StepError{Step: rt.step, Machine: key, Err: err}
	}
	rt.emit(Event{Kind: EventItemDone, Machine: key, Elapsed: time.Since(start), Attempt: rec.Attempt})
	return v, nil
}
