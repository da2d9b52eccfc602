package engine_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// fnStep is a step made of functions, recording what ran in a shared log.
type fnStep struct {
	name    string
	log     *[]string
	run     func(ctx context.Context, st *engine.State) error
	cleanup func(ctx context.Context)
}

func (s *fnStep) Name() string { return s.name }
func (s *fnStep) Run(ctx context.Context, st *engine.State) error {
	*s.log = append(*s.log, "run "+s.name)
	if s.run != nil {
		return s.run(ctx, st)
	}
	return nil
}
func (s *fnStep) Cleanup(ctx context.Context, _ *engine.State) {
	*s.log = append(*s.log, "cleanup "+s.name)
	if s.cleanup != nil {
		s.cleanup(ctx)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []engine.Event
}

func (r *recorder) on(e engine.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) kinds() []string {
	var out []string
	for _, e := range r.events {
		s := string(e.Kind) + " " + e.Step
		if e.Machine != "" {
			s += "/" + e.Machine
		}
		out = append(out, s)
	}
	return out
}

func begin(t *testing.T) (*state.Store, *engine.Session) {
	t.Helper()
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "prod", Provider: "local"}); err != nil {
		t.Fatal(err)
	}
	ss, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v1", Command: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return s, ss
}

func TestRunnerEventsAndJournal(t *testing.T) {
	ctx := context.Background()
	s, ss := begin(t)
	var log []string
	rec := &recorder{}
	steps := []engine.Step{
		&fnStep{name: "a", log: &log},
		&fnStep{name: "b", log: &log, run: func(ctx context.Context, st *engine.State) error {
			for _, m := range []string{"m0", "m1"} {
				if _, err := engine.Do(ctx, st, m, func(context.Context) (int, error) {
					st.Progress(m, 10, "booting")
					return len(m), nil
				}); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	r := &engine.Runner{Store: s, OnEvent: rec.on}
	if err := r.Run(ctx, ss.State, steps); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"run-started ",
		"step-started a", "step-done a",
		"step-started b",
		"machine-started b/m0", "progress b/m0", "machine-done b/m0",
		"machine-started b/m1", "progress b/m1", "machine-done b/m1",
		"step-done b",
	}
	if diff := cmp.Diff(want, rec.kinds()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b"}, rec.events[0].Steps); diff != "" {
		t.Errorf("run-started steps (-want +got):\n%s", diff)
	}
	if e := rec.events[5]; e.Index != 2 || e.Total != 2 || e.Message != "booting" || e.Percent != 10 {
		t.Errorf("progress event = %+v", e)
	}

	// Run again: everything is skipped, nothing runs.
	log, rec.events = nil, nil
	if err := r.Run(ctx, ss.State, steps); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"run-started ", "step-skipped a", "step-skipped b"}, rec.kinds()); diff != "" {
		t.Errorf("second run events (-want +got):\n%s", diff)
	}
	if len(log) != 0 {
		t.Errorf("second run ran %v", log)
	}
	j, _ := s.Journal(ctx, ss.State.Deployment.ID)
	var got []string
	for _, r := range j {
		got = append(got, r.Step+"/"+r.Key+" "+string(r.State)+" "+string(r.Output))
	}
	if diff := cmp.Diff([]string{"a/ done ", "b/ done ", "b/m0 done 2", "b/m1 done 2"}, got); diff != "" {
		t.Errorf("journal (-want +got):\n%s", diff)
	}
}

func TestRunnerFailureAndRollback(t *testing.T) {
	boom := errors.New("quota exceeded")
	for _, tc := range []struct {
		name     string
		rollback bool
		wantLog  []string
	}{
		{"no rollback", false, []string{"run a", "run b", "run c"}},
		{"rollback", true, []string{"run a", "run b", "run c", "cleanup c", "cleanup b", "cleanup a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			s, ss := begin(t)
			var log []string
			steps := []engine.Step{
				&fnStep{name: "a", log: &log},
				&fnStep{name: "b", log: &log},
				&fnStep{name: "c", log: &log, run: func(ctx context.Context, st *engine.State) error {
					_, err := engine.Do(ctx, st, "prod-worker-1", func(context.Context) (string, error) { return "", boom })
					return err
				}},
				&fnStep{name: "d", log: &log},
			}
			r := &engine.Runner{Store: s, Rollback: tc.rollback}
			err := r.Run(ctx, ss.State, steps)
			var se *engine.StepError
			if !errors.As(err, &se) || se.Step != "c" || se.Machine != "prod-worker-1" || !errors.Is(err, boom) {
				t.Fatalf("err = %#v, want StepError{c, prod-worker-1, boom}", err)
			}
			if err.Error() != "c: prod-worker-1: quota exceeded" {
				t.Errorf("message %q", err)
			}
			if diff := cmp.Diff(tc.wantLog, log); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			rec, _ := s.Step(ctx, ss.State.Deployment.ID, "c", "prod-worker-1")
			if rec.State != state.StepFailed || rec.Error != "quota exceeded" {
				t.Errorf("journal of the failed item: %+v", rec)
			}
			rec, _ = s.Step(ctx, ss.State.Deployment.ID, "a", "")
			want := state.StepDone
			if tc.rollback {
				want = state.StepCleaned
			}
			if rec.State != want {
				t.Errorf("step a is %s, want %s", rec.State, want)
			}
			if err := ss.Finish(ctx, err, tc.rollback); err != nil {
				t.Fatal(err)
			}
			d, _ := s.GetDeployment(ctx, ss.State.Deployment.ID)
			wantRes := state.Failed
			if tc.rollback {
				wantRes = state.RolledBack
			}
			if d.Result != wantRes || !strings.Contains(d.Error, "quota exceeded") {
				t.Errorf("deployment = %+v", d)
			}
		})
	}
}

// TestRollbackAfterCancel: Ctrl-C cancels the run, yet Cleanup still runs
// with a live (uncancelled) context that has a deadline.
func TestRollbackAfterCancel(t *testing.T) {
	s, ss := begin(t)
	ctx, cancel := context.WithCancel(context.Background())
	var log []string
	var cleanupCtxErr error
	var hasDeadline bool
	steps := []engine.Step{
		&fnStep{name: "machines", log: &log, cleanup: func(ctx context.Context) {
			cleanupCtxErr = ctx.Err()
			_, hasDeadline = ctx.Deadline()
		}},
		&fnStep{name: "wait", log: &log, run: func(ctx context.Context, _ *engine.State) error {
			cancel() // the user presses Ctrl-C while this step waits
			<-ctx.Done()
			return ctx.Err()
		}},
		&fnStep{name: "never", log: &log},
	}
	r := &engine.Runner{Store: s, Rollback: true, CleanupTimeout: time.Minute}
	err := r.Run(ctx, ss.State, steps)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if diff := cmp.Diff([]string{"run machines", "run wait", "cleanup wait", "cleanup machines"}, log); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if cleanupCtxErr != nil || !hasDeadline {
		t.Errorf("cleanup context: err %v, deadline %v; want live with a deadline", cleanupCtxErr, hasDeadline)
	}
	if err := ss.Finish(ctx, err, false); err != nil {
		t.Fatal(err)
	}
	d, _ := s.GetDeployment(context.Background(), ss.State.Deployment.ID)
	if d.Result != state.Interrupted {
		t.Errorf("result = %s, want interrupted", d.Result)
	}
	// The lock was released despite the cancelled context.
	if _, _, err := s.LockHolderOf(context.Background(), "prod"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("lock still held: %v", err)
	}
}

// TestStopUnderAStepThatHidesIt: a step that answers a stop with an
// error of its own (a wait that reports "not ready") is interrupted, not
// failed, so the deploy stays resumable.
func TestStopUnderAStepThatHidesIt(t *testing.T) {
	s, ss := begin(t)
	ctx, cancel := context.WithCancel(context.Background())
	var log []string
	steps := []engine.Step{
		&fnStep{name: "wait", log: &log, run: func(ctx context.Context, _ *engine.State) error {
			cancel()
			<-ctx.Done()
			return errors.New("control plane not ready")
		}},
	}
	err := (&engine.Runner{Store: s}).Run(ctx, ss.State, steps)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "control plane not ready") {
		t.Fatalf("err = %v, want context.Canceled with the step's error", err)
	}
	if err := ss.Finish(ctx, err, false); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDeployment(context.Background(), ss.State.Deployment.ID); d.Result != state.Interrupted {
		t.Errorf("result = %s, want interrupted", d.Result)
	}
}

func TestRunnerRejectsDuplicateStepNames(t *testing.T) {
	s, ss := begin(t)
	var log []string
	err := (&engine.Runner{Store: s}).Run(context.Background(), ss.State, []engine.Step{&fnStep{name: "a", log: &log}, &fnStep{name: "a", log: &log}})
	if err == nil || len(log) != 0 {
		t.Errorf("err = %v, ran %v", err, log)
	}
}

func TestBeginLocksAndResumes(t *testing.T) {
	ctx := context.Background()
	s, first := begin(t)
	// A second deploy of the same env is refused while the first runs.
	_, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v1", Command: "k2 deploy again"})
	if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), `is locked by pid`) || !strings.Contains(err.Error(), `"test"`) {
		t.Fatalf("second Begin = %v, want a lock error naming the holder", err)
	}
	if _, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "nope"}); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Begin(unknown env) = %v", err)
	}
	// Interrupted: the next Begin resumes it (same ref), ResumeNever does not.
	first.Finish(ctx, context.Canceled, false)
	again, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Resumed || again.State.Deployment.ID != first.State.Deployment.ID || again.State.Deployment.Result != state.Running {
		t.Errorf("Begin after an interruption: resumed=%v id=%s (first %s)", again.Resumed, again.State.Deployment.ID, first.State.Deployment.ID)
	}
	again.Finish(ctx, errors.New("boom"), false)
	// Failed: a new deploy starts afresh; k2 resume picks it up.
	fresh, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v1"})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Resumed || fresh.State.Deployment.ID == first.State.Deployment.ID {
		t.Errorf("Begin after a failure resumed it")
	}
	fresh.Finish(ctx, errors.New("boom"), false)
	res, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", Resume: engine.ResumeRequired})
	if err != nil || !res.Resumed || res.State.Deployment.ID != fresh.State.Deployment.ID {
		t.Fatalf("ResumeRequired after a failure: %v", err)
	}
	res.Finish(ctx, nil, false)
	if _, err := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", Resume: engine.ResumeRequired}); !errors.Is(err, engine.ErrNothingToResume) {
		t.Errorf("ResumeRequired after success = %v, want ErrNothingToResume", err)
	}
	// A different artifact never resumes an interrupted deploy of another one.
	d1, _ := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v1"})
	d1.Finish(ctx, context.Canceled, false)
	d2, _ := engine.Begin(ctx, s, engine.BeginOptions{Env: "prod", ArtifactRef: "r:v2"})
	if d2.Resumed {
		t.Errorf("a deploy of r:v2 resumed one of r:v1")
	}
	d2.Finish(ctx, nil, false)
	h, _ := s.History(ctx, "prod", 0)
	var results []state.Result
	for _, d := range h {
		results = append(results, d.Result)
	}
	if diff := cmp.Diff([]state.Result{state.Succeeded, state.Interrupted, state.Succeeded, state.Failed}, results); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

func TestPrinter(t *testing.T) {
	var b bytes.Buffer
	p := engine.NewPrinter(&b)
	for _, e := range []engine.Event{
		{Kind: engine.EventRunStarted, Total: 5, Steps: []string{"pull", "machines", "wait", "apply", "done"}},
		{Kind: engine.EventStepStarted, Step: "machines", Index: 2, Total: 5},
		{Kind: engine.EventProgress, Step: "machines", Index: 2, Total: 5, Machine: "prod-worker-0", Message: "creating VM", Percent: 40},
		{Kind: engine.EventItemDone, Step: "machines", Index: 2, Total: 5, Machine: "prod-worker-0", Elapsed: 1500 * time.Millisecond},
		{Kind: engine.EventStepSkipped, Step: "pull", Index: 1, Total: 5},
		{Kind: engine.EventStepStarted, Step: "apply", Index: 4, Total: 5, Attempt: 2},
		{Kind: engine.EventStepFailed, Step: "apply", Index: 4, Total: 5, Error: "apply: timeout"},
		{Kind: engine.EventItemFailed, Step: "layers", Index: 5, Total: 5, Machine: "layer/web", Error: "pod web-1: ImagePullBackOff"},
		{Kind: engine.EventStepFailed, Step: "layers", Index: 5, Total: 5, Machine: "layer/web", Error: "layers: layer/web: pod web-1: ImagePullBackOff"},
	} {
		p(e)
	}
	want := `[2/5] machines: started
[2/5] machines: prod-worker-0: 40% creating VM
[2/5] machines: prod-worker-0: done in 1.5s
[1/5] pull: already done
[4/5] apply: started (attempt 2)
[4/5] apply: failed: apply: timeout
[5/5] layers: layer/web: failed: pod web-1: ImagePullBackOff
[5/5] layers: layer/web: failed (the error is above)
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestPlanStepKeepsTheJournaledPlan(t *testing.T) {
	ctx := context.Background()
	s, ss := begin(t)
	p1 := &engine.Plan{Env: "prod", Machines: []engine.MachinePlan{{Name: "prod-control-plane-0"}}}
	r := &engine.Runner{Store: s}
	if err := r.Run(ctx, ss.State, []engine.Step{&engine.PlanStep{Plan: p1}}); err != nil {
		t.Fatal(err)
	}
	// A resume with a different plan keeps the first.
	ss.State.Plan = nil
	p2 := &engine.Plan{Env: "prod", Machines: []engine.MachinePlan{{Name: "prod-control-plane-0"}, {Name: "prod-worker-0"}}}
	if err := r.Run(ctx, ss.State, []engine.Step{&engine.PlanStep{Plan: p2}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p1.Machines, ss.State.Plan.Machines); diff != "" {
		t.Errorf("resumed plan (-want +got):\n%s", diff)
	}
}
