package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// These tests use the real local provider in-process: its machines are
// processes (here `sleep`) with a directory each.

type localEnv struct {
	store *state.Store
	prov  sdk.Provider
	cfg   sdk.Config
	plan  *engine.Plan
}

func newLocal(t *testing.T) *localEnv {
	t.Helper()
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	env, err := s.CreateEnv(ctx, state.Environment{Name: "prod", Provider: "local"})
	if err != nil {
		t.Fatal(err)
	}
	prov := local.New()
	cfg, _ := json.Marshal(map[string]string{"stateDir": t.TempDir()})
	d, err := prov.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := engine.NewPlan(engine.PlanOptions{Env: env, Config: &artifact.Config{
		Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "2", CPU: "1", Memory: "1Gi"}},
	}, Capabilities: &d.Capabilities})
	if err != nil {
		t.Fatal(err)
	}
	le := &localEnv{store: s, prov: prov, cfg: cfg, plan: p}
	t.Cleanup(func() { le.deleteAll(t) })
	return le
}

func (le *localEnv) listed(t *testing.T) []string {
	t.Helper()
	l, err := le.prov.List(context.Background(), &sdk.ListRequest{Config: le.cfg})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range l.Machines {
		out = append(out, m.Name+" "+m.RequestID)
	}
	sort.Strings(out)
	return out
}

func (le *localEnv) deleteAll(t *testing.T) {
	l, err := le.prov.List(context.Background(), &sdk.ListRequest{Config: le.cfg})
	if err != nil {
		return
	}
	var ids []string
	for _, m := range l.Machines {
		ids = append(ids, m.ID)
	}
	if len(ids) > 0 {
		le.prov.Delete(context.Background(), &sdk.DeleteRequest{Config: le.cfg, MachineIDs: ids})
	}
}

func (le *localEnv) steps(extra ...engine.Step) []engine.Step {
	return append([]engine.Step{
		&engine.PlanStep{Plan: le.plan},
		&engine.MachinesStep{Provider: le.prov, Config: le.cfg,
			Bootstrap: func(_ context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
				return sdk.Bootstrap{Method: st.Plan.Bootstrap, Command: []string{"sleep", "600"}}, nil
			}},
	}, extra...)
}

func (le *localEnv) wantListed() []string {
	var out []string
	for _, m := range le.plan.Machines {
		out = append(out, m.Name+" "+m.RequestID)
	}
	sort.Strings(out)
	return out
}

func TestMachinesStepWithLocalProvider(t *testing.T) {
	ctx := context.Background()
	le := newLocal(t)
	rec := &recorder{}
	r := &engine.Runner{Store: le.store, OnEvent: rec.on}
	ss, err := engine.Begin(ctx, le.store, engine.BeginOptions{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, ss.State, le.steps()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(le.wantListed(), le.listed(t)); diff != "" {
		t.Errorf("provider's machines (-want +got):\n%s", diff)
	}
	ms, _ := le.store.ListMachines(ctx, "prod")
	for _, m := range ms {
		if m.State != state.MachineCreated || m.ProviderID != "local-"+m.Name || len(m.Addresses) == 0 {
			t.Errorf("recorded machine %+v", m)
		}
	}
	if len(ms) != 3 {
		t.Errorf("%d machines recorded, want 3", len(ms))
	}
	progress := 0
	for _, e := range rec.events {
		if e.Kind == engine.EventProgress && e.Machine != "" {
			progress++
		}
	}
	if progress < 3 {
		t.Errorf("%d per-machine progress events, want at least one per machine", progress)
	}
	ss.Finish(ctx, nil, false)

	// A new deployment asks again with the same request ids: the provider
	// returns the machines it has, nothing new is made.
	ss, err = engine.Begin(ctx, le.store, engine.BeginOptions{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx, ss.State, le.steps()); err != nil {
		t.Fatal(err)
	}
	ss.Finish(ctx, nil, false)
	if diff := cmp.Diff(le.wantListed(), le.listed(t)); diff != "" {
		t.Errorf("after a second deploy (-want +got):\n%s", diff)
	}
}

type failStep struct{}

func (failStep) Name() string                             { return "control-plane" }
func (failStep) Run(context.Context, *engine.State) error { return errors.New("readyz timed out") }
func (failStep) Cleanup(context.Context, *engine.State)   {}

func TestMachinesStepRollbackDeletes(t *testing.T) {
	ctx := context.Background()
	le := newLocal(t)
	ss, err := engine.Begin(ctx, le.store, engine.BeginOptions{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	r := &engine.Runner{Store: le.store, Rollback: true}
	err = r.Run(ctx, ss.State, le.steps(failStep{}))
	var se *engine.StepError
	if !errors.As(err, &se) || se.Step != "control-plane" {
		t.Fatalf("err = %v", err)
	}
	if got := le.listed(t); len(got) != 0 {
		t.Errorf("machines left after rollback: %v", got)
	}
	if ms, _ := le.store.ListMachines(ctx, "prod"); len(ms) != 0 {
		t.Errorf("machines still recorded after rollback: %v", ms)
	}
	ss.Finish(ctx, err, true)
}
