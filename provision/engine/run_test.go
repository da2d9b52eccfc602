package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"k2.dev/k2/artifact"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func TestDeployCreatesEnvPlansAndRuns(t *testing.T) {
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prov := local.New()
	cfg, _ := json.Marshal(map[string]string{"stateDir": t.TempDir()})
	le := &localEnv{store: s, prov: prov, cfg: cfg}
	defer le.deleteAll(t)
	d, _ := prov.Describe(ctx, &sdk.DescribeRequest{})
	spec := &artifact.Config{
		Args:     []artifact.ArgSpec{{Name: "workers"}},
		Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "${workers}"}},
	}
	var events []engine.Event
	opts := engine.DeployOptions{
		Env: "dev", Provider: "local", ArtifactRef: "hello:v1", ArtifactDigest: "sha256:1", Command: "k2 deploy hello:v1",
		Plan: func(ctx context.Context, env *state.Environment) (*engine.Plan, error) {
			return engine.NewPlan(engine.PlanOptions{Env: env, Config: spec, Sets: map[string]string{"workers": "1"}, Capabilities: &d.Capabilities})
		},
		Steps: func(*engine.State) []engine.Step {
			return []engine.Step{&engine.MachinesStep{Provider: prov, Config: cfg,
				Bootstrap: func(_ context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
					return sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sleep", "600"}}, nil
				}}}
		},
		OnEvent: func(e engine.Event) { events = append(events, e) },
	}
	res, err := engine.Deploy(ctx, s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deployment.Result != state.Succeeded || res.Resumed || len(res.Plan.Machines) != 2 {
		t.Errorf("result = %+v", res)
	}
	env, err := s.GetEnv(ctx, "dev")
	if err != nil || env.Provider != "local" {
		t.Fatalf("environment not created: %v", err)
	}
	// The plan was made for the created environment: real request ids.
	if res.Plan.Machines[0].RequestID != engine.RequestID(env, "control-plane", 0) {
		t.Errorf("request id %q not derived from the created environment", res.Plan.Machines[0].RequestID)
	}
	if ms, _ := s.ListMachines(ctx, "dev"); len(ms) != 2 {
		t.Errorf("%d machines recorded", len(ms))
	}
	h, _ := s.History(ctx, "dev", 0)
	if len(h) != 1 || h[0].ArtifactDigest != "sha256:1" || h[0].Result != state.Succeeded {
		t.Errorf("history = %+v", h)
	}
	if len(events) == 0 {
		t.Error("no events")
	}
	if _, _, err := s.LockHolderOf(ctx, "dev"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("lock not released: %v", err)
	}

	// A plan that fails (missing ARG) creates nothing and records nothing.
	opts.Env = "qa"
	opts.Plan = func(ctx context.Context, env *state.Environment) (*engine.Plan, error) {
		return engine.NewPlan(engine.PlanOptions{Env: env, Config: spec, Capabilities: &d.Capabilities})
	}
	if _, err := engine.Deploy(ctx, s, opts); err == nil {
		t.Fatal("deploy without a required ARG succeeded")
	}
	if _, err := s.GetEnv(ctx, "qa"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a failed plan created the environment: %v", err)
	}
}
