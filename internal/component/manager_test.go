package component_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"k2.dev/k2/internal/component"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// journal records lifecycle calls in order.
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.log...)
}

// fake is a component that records its calls and fails where told. With
// run set it is a Runner that works until its context ends (or fails after
// runFail); with ready set a Readier that waits for ready to be closed.
type fake struct {
	name              string
	j                 *journal
	initErr, startErr error
	stopErr           error
	run               bool
	runFail           chan error    // Run returns what arrives here
	ready             chan struct{} // Ready waits for it (nil: no Readier)
	readyErr          error
	ignoreCtx         bool // Run ignores its context (returns on unblock only)
	unblock           chan struct{}
}

func (f *fake) Name() string { return f.name }
func (f *fake) Init(context.Context) error {
	f.j.add("init " + f.name)
	return f.initErr
}
func (f *fake) Start(context.Context) error {
	f.j.add("start " + f.name)
	return f.startErr
}
func (f *fake) Stop(context.Context) error {
	f.j.add("stop " + f.name)
	if f.unblock != nil {
		close(f.unblock)
	}
	return f.stopErr
}

type runner struct{ *fake }

func (r runner) Run(ctx context.Context) error {
	r.j.add("run " + r.name)
	if r.ignoreCtx {
		<-r.unblock
		r.j.add("run returned " + r.name)
		return nil
	}
	select {
	case <-ctx.Done():
		r.j.add("run returned " + r.name)
		return nil
	case err := <-r.runFail:
		return err
	}
}

type readier struct{ runner }

func (r readier) Ready(ctx context.Context) error {
	if r.readyErr != nil {
		return r.readyErr
	}
	select {
	case <-r.ready:
		r.j.add("ready " + r.name)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fake) component() component.Component {
	switch {
	case f.ready != nil || f.readyErr != nil:
		return readier{runner{f}}
	case f.run:
		return runner{f}
	}
	return f
}

func TestStartStopOrder(t *testing.T) {
	j := &journal{}
	ready := make(chan struct{})
	close(ready)
	m := component.NewManager(nil,
		(&fake{name: "a", j: j}).component(),
		(&fake{name: "b", j: j, run: true, ready: ready}).component(),
		(&fake{name: "c", j: j, run: true}).component(),
	)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	got := j.get()
	// Run is concurrent with what follows its Start; compare it apart.
	var order []string
	for _, s := range got {
		if !strings.HasPrefix(s, "run ") { // Run and its return: checked below
			order = append(order, s)
		}
	}
	want := []string{
		"init a", "init b", "init c",
		"start a",
		"start b", "ready b",
		"start c",
		"stop c",
		"stop b",
		"stop a",
	}
	if diff := cmp.Diff(want, order); diff != "" {
		t.Errorf("lifecycle (-want +got):\n%s", diff)
	}
	// Each Run has returned before the component started before it stops.
	for _, p := range [][2]string{{"run returned c", "stop b"}, {"run returned b", "stop a"}} {
		if i, k := slices.Index(got, p[0]), slices.Index(got, p[1]); i < 0 || i > k {
			t.Errorf("%q not before %q: %v", p[0], p[1], got)
		}
	}
	for _, name := range []string{"b", "c"} {
		if !slices.Contains(got, "run "+name) {
			t.Errorf("Run of %s never called: %v", name, got)
		}
	}
}

func TestFailingComponentIsNamed(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		fakes     func(j *journal) []*fake
		wantErr   string
		wantPhase string
		wantStops []string
	}{{
		name: "init",
		fakes: func(j *journal) []*fake {
			return []*fake{{name: "a", j: j}, {name: "b", j: j, initErr: boom}, {name: "c", j: j}}
		},
		wantErr: "starting b: boom", wantPhase: component.PhaseInit,
		wantStops: []string{"stop a"},
	}, {
		name: "start",
		fakes: func(j *journal) []*fake {
			return []*fake{{name: "a", j: j, run: true}, {name: "b", j: j, startErr: boom}, {name: "c", j: j}}
		},
		wantErr: "starting b: boom", wantPhase: component.PhaseStart,
		wantStops: []string{"stop c", "stop b", "stop a"},
	}, {
		name: "ready",
		fakes: func(j *journal) []*fake {
			return []*fake{{name: "a", j: j}, {name: "b", j: j, run: true, readyErr: boom}}
		},
		wantErr: "waiting for b: boom", wantPhase: component.PhaseReady,
		wantStops: []string{"stop b", "stop a"},
	}, {
		// a fails while b waits to be ready: a is named, not b.
		name: "earlier component fails during a later Ready",
		fakes: func(j *journal) []*fake {
			a := &fake{name: "a", j: j, run: true, runFail: make(chan error, 1)}
			a.runFail <- boom
			return []*fake{a, {name: "b", j: j, run: true, ready: make(chan struct{})}}
		},
		wantErr: "a: boom", wantPhase: component.PhaseRun,
		wantStops: []string{"stop b", "stop a"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			j := &journal{}
			var cs []component.Component
			for _, f := range tc.fakes(j) {
				cs = append(cs, f.component())
			}
			m := component.NewManager(nil, cs...)
			err := m.Start(context.Background())
			var ce *component.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Start = %v, want a *component.Error", err)
			}
			if err.Error() != tc.wantErr || ce.Phase != tc.wantPhase || !errors.Is(err, boom) {
				t.Errorf("Start = %q (phase %s), want %q (phase %s) wrapping boom", err, ce.Phase, tc.wantErr, tc.wantPhase)
			}
			var stops []string
			for _, s := range j.get() {
				if strings.HasPrefix(s, "stop ") {
					stops = append(stops, s)
				}
			}
			if diff := cmp.Diff(tc.wantStops, stops); diff != "" {
				t.Errorf("stops (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunFailureAfterStart(t *testing.T) {
	j := &journal{}
	a := &fake{name: "datastore", j: j, run: true, runFail: make(chan error, 1)}
	m := component.NewManager(nil, a.component(), (&fake{name: "b", j: j, run: true}).component())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.runFail <- errors.New("disk full")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := m.Wait(ctx)
	if err == nil || err.Error() != "datastore: disk full" {
		t.Errorf("Wait = %v, want datastore: disk full", err)
	}
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestStopErrorsNamed(t *testing.T) {
	j := &journal{}
	m := component.NewManager(nil,
		(&fake{name: "a", j: j, stopErr: errors.New("busy")}).component(),
		(&fake{name: "b", j: j, stopErr: errors.New("stuck")}).component())
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := m.Stop(context.Background())
	if err == nil || err.Error() != "stopping b: stuck\nstopping a: busy" {
		t.Errorf("Stop = %q", err)
	}
}

// A Run that ignores its context is unblocked by Stop: Stop comes before
// the wait for Run.
func TestStopBeforeWaitingForRun(t *testing.T) {
	j := &journal{}
	f := &fake{name: "server", j: j, run: true, ignoreCtx: true, unblock: make(chan struct{})}
	m := component.NewManager(nil, f.component())
	m.StopTimeout = 10 * time.Second
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("Stop took %s", d)
	}
}

func TestCancelledStart(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan struct{})
	m := component.NewManager(nil,
		(&fake{name: "a", j: j, run: true}).component(),
		(&fake{name: "slow", j: j, run: true, ready: never}).component())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	err := m.Start(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "slow") {
		t.Errorf("Start = %v, want slow named and context.Canceled", err)
	}
}

func TestFunc(t *testing.T) {
	ran := make(chan struct{})
	c := component.Func("gc", func(ctx context.Context) error {
		close(ran)
		<-ctx.Done()
		return nil
	})
	m := component.NewManager(nil, c)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-ran
	if err := m.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.Name()); got != "gc" {
		t.Errorf("Name = %q", got)
	}
}
