package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/artifact"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// TestDeployArtifactFailResumeRollBack runs the installer's paths with the
// real local provider: a deploy whose step fails, FindUnfinished, a resume
// that fails again, and the roll back that deletes the machines.
func TestDeployArtifactFailResumeRollBack(t *testing.T) {
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	prov := local.New()
	cfg, _ := json.Marshal(map[string]string{"stateDir": t.TempDir(), "network": "host"})
	le := &localEnv{store: s, prov: prov, cfg: cfg}
	defer le.deleteAll(t)
	a := &artifact.Artifact{Ref: "hello:v1", Config: &artifact.Config{
		Args:     []artifact.ArgSpec{{Name: "workers"}},
		Machines: []artifact.MachineSpec{{Pool: "control-plane", Count: "1"}, {Pool: "worker", Count: "${workers}"}},
	}}
	boom := errors.New("layer failed")
	failing := true
	var runs []string
	o := engine.ArtifactDeploy{
		Env: "dev", Provider: "local", Artifact: a, Client: prov, Sets: map[string]string{"workers": "1"},
		Steps: func(*engine.State) []engine.Step {
			return []engine.Step{
				&engine.MachinesStep{Provider: prov, Config: cfg,
					Bootstrap: func(_ context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
						return sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sleep", "600"}}, nil
					}},
				&fnStep{name: "layers", log: &runs, run: func(context.Context, *engine.State) error {
					if failing {
						return boom
					}
					return nil
				}},
			}
		},
	}
	if _, err := engine.DeployArtifact(ctx, s, o); !errors.Is(err, boom) {
		t.Fatalf("first deploy: %v, want %v", err, boom)
	}
	if got := le.listed(t); len(got) != 2 {
		t.Fatalf("machines after the failure: %v", got)
	}
	u, err := engine.FindUnfinished(ctx, s, "dev")
	if err != nil {
		t.Fatal(err)
	}
	if u.Deployment.Result != state.Failed || u.Deployment.ArtifactRef != "hello:v1" || u.Plan == nil {
		t.Fatalf("unfinished = %+v", u)
	}
	// --set values come back for the resume; the environment never had them.
	if diff := cmp.Diff(map[string]string{"workers": "1"}, u.Sets()); diff != "" {
		t.Errorf("Sets (-want +got):\n%s", diff)
	}

	// Resume: machines are skipped, the failed step runs again.
	o.Sets, o.Resume = u.Sets(), engine.ResumeRequired
	res, err := engine.DeployArtifact(ctx, s, o)
	if !errors.Is(err, boom) || !res.Resumed || res.Deployment.ID != u.Deployment.ID {
		t.Fatalf("resume: %v %+v", err, res)
	}
	if diff := cmp.Diff([]string{"run layers", "run layers"}, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}

	// Roll back: nothing runs, the machines go, the deployment is rolled back.
	o.RollbackOnly = true
	res, err = engine.DeployArtifact(ctx, s, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deployment.Result != state.RolledBack || res.Deployment.ID != u.Deployment.ID {
		t.Errorf("roll back result %+v", res.Deployment)
	}
	if diff := cmp.Diff([]string{"run layers", "run layers", "cleanup layers"}, runs); diff != "" {
		t.Errorf("runs (-want +got):\n%s", diff)
	}
	if got := le.listed(t); len(got) != 0 {
		t.Errorf("machines after the roll back: %v", got)
	}
	if ms, _ := s.ListMachines(ctx, "dev"); len(ms) != 0 {
		t.Errorf("machine records after the roll back: %v", ms)
	}
	if _, err := engine.FindUnfinished(ctx, s, "dev"); !errors.Is(err, engine.ErrNothingToResume) {
		t.Errorf("FindUnfinished after the roll back: %v", err)
	}

	// A succeeded deploy leaves nothing to resume either.
	failing, o.RollbackOnly, o.Resume = false, false, engine.ResumeAuto
	if _, err := engine.DeployArtifact(ctx, s, o); err != nil {
		t.Fatal(err)
	}
	if _, err := engine.FindUnfinished(ctx, s, "dev"); !errors.Is(err, engine.ErrNothingToResume) {
		t.Errorf("FindUnfinished after success: %v", err)
	}
	if _, err := engine.FindUnfinished(ctx, s, "nope"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("FindUnfinished of a missing environment: %v", err)
	}
}
