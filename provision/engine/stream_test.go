package engine_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func TestGoStreamsEventsInOrderAndStops(t *testing.T) {
	ctx := context.Background()
	s, ss := begin(t)
	var log []string
	started := make(chan struct{})
	steps := []engine.Step{
		&fnStep{name: "a", log: &log},
		&fnStep{name: "b", log: &log, run: func(ctx context.Context, st *engine.State) error {
			for i := range 200 { // more events than any channel buffer
				st.Progress("", i%100, "tick %d", i)
			}
			close(started)
			<-ctx.Done() // runs until stopped
			return ctx.Err()
		}},
		&fnStep{name: "c", log: &log},
	}
	run := engine.Go(ctx, func(ctx context.Context, on func(engine.Event)) (*engine.DeployResult, error) {
		r := &engine.Runner{Store: s, OnEvent: on}
		err := r.Run(ctx, ss.State, steps)
		return &engine.DeployResult{Deployment: ss.State.Deployment}, errors.Join(err, ss.Finish(ctx, err, false))
	})
	<-started
	// Nobody has read yet: the run is not held up by its reader.
	run.Stop()
	select {
	case <-run.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end the run")
	}
	var kinds []string
	progress := 0
	for {
		e, ok := run.Next()
		if !ok {
			break
		}
		if e.Kind == engine.EventProgress {
			if e.Message != "tick "+strconv.Itoa(progress) {
				t.Fatalf("progress %d out of order: %q", progress, e.Message)
			}
			progress++
			continue
		}
		kinds = append(kinds, string(e.Kind)+" "+e.Step)
	}
	want := []string{"run-started ", "step-started a", "step-done a", "step-started b", "step-failed b"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if progress != 200 {
		t.Errorf("%d progress events, want 200", progress)
	}
	if _, ok := run.Next(); ok {
		t.Error("Next after the end returned an event")
	}
	res, err := run.Wait()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Wait error = %v, want context.Canceled", err)
	}
	if res.Deployment.Result != state.Interrupted {
		t.Errorf("deployment result %s, want interrupted (resumable)", res.Deployment.Result)
	}
}
