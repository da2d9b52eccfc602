package cluster

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/state"
)

// TestStatusOfAFailedDeploy: k2 status of a deploy that failed in a layer
// names the step and the layer, gives the layer's own error as the reason
// and the two ways on.
func TestStatusOfAFailedDeploy(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, _ := newTestEnv(t, home, state.Environment{Name: "dev", Provider: "local"})
	d, err := s.BeginDeployment(ctx, state.Deployment{Env: "dev", Op: state.OpDeploy, ArtifactRef: "hello:v1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"plan", "identity"} {
		s.StepStarted(ctx, d.ID, step, "")
		s.StepDone(ctx, d.ID, step, "", nil)
	}
	s.StepStarted(ctx, d.ID, "layers", "")
	s.StepStarted(ctx, d.ID, "layers", "layer/k2-system")
	s.StepDone(ctx, d.ID, "layers", "layer/k2-system", nil)
	s.StepStarted(ctx, d.ID, "layers", "layer/web")
	s.StepFailed(ctx, d.ID, "layers", "layer/web", "App default/web will not become ready: pod web-1: ImagePullBackOff")
	s.StepFailed(ctx, d.ID, "layers", "", "layers: layer/web: App default/web will not become ready: pod web-1: ImagePullBackOff")
	s.FinishDeployment(ctx, d.ID, state.Failed, "layers: layer/web: App default/web will not become ready: pod web-1: ImagePullBackOff")

	st, err := GetStatus(ctx, s, home, "dev")
	if err != nil {
		t.Fatal(err)
	}
	want := &Failure{Step: "layers", Item: "layer/web", Reason: "App default/web will not become ready: pod web-1: ImagePullBackOff",
		Next: []string{"k2 resume dev", "k2 destroy dev"}}
	if diff := cmp.Diff(want, st.Failure); diff != "" {
		t.Errorf("Failure (-want +got):\n%s", diff)
	}
	if st.Healthy || len(st.Problems) == 0 || st.Problems[0] != "last deploy failed at layers (layer/web)" {
		t.Errorf("healthy %v, problems %q", st.Healthy, st.Problems)
	}
}

// newTestEnv opens a state store in home, closed when the test ends, with
// the environment env in it.
func newTestEnv(t *testing.T, home string, env state.Environment) (*state.Store, *state.Environment) {
	t.Helper()
	ctx := context.Background()
	s, err := state.Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e, err := s.CreateEnv(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	return s, e
}
