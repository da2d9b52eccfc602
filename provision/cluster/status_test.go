package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/machine"
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

// listed is a provider that lists fixed machines (an in-test double: the
// local provider's own List is tested in provision/machine).
type listed struct {
	sdk.UnimplementedProvider
	machines []sdk.Machine
	err      error
}

func (l listed) List(context.Context, *sdk.ListRequest) (*sdk.ListResponse, error) {
	return &sdk.ListResponse{Machines: l.machines}, l.err
}

// TestStatusWithProvider: with the provider asked, each machine carries
// the provider's state and addresses (missing when it does not list it,
// a problem), in one List call; a provider that cannot be started or
// fails leaves a warning and the records.
func TestStatusWithProvider(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, _ := newTestEnv(t, home, state.Environment{Name: "dev", Provider: "local"})
	for _, m := range []state.Machine{
		{Env: "dev", Name: "dev-control-plane-0", RequestID: "r1", ProviderID: "local-dev-control-plane-0", Role: "control-plane", Pool: "control-plane", Addresses: []string{"10.0.0.2"}, State: state.MachineReady},
		{Env: "dev", Name: "dev-worker-0", RequestID: "r2", ProviderID: "local-dev-worker-0", Role: "worker", Pool: "worker", State: state.MachineReady},
	} {
		if err := s.PutMachine(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	d, _ := s.BeginDeployment(ctx, state.Deployment{Env: "dev", Op: state.OpDeploy, ArtifactRef: "hello:v1"})
	s.FinishDeployment(ctx, d.ID, state.Succeeded, "")
	opens := 0
	open := func(p sdk.Provider, err error) machine.Opener {
		return func(_ context.Context, name string) (machine.Provider, io.Closer, error) {
			opens++
			if name != "local" {
				t.Errorf("opened provider %q, want local", name)
			}
			if err != nil {
				return nil, nil, err
			}
			return p, io.NopCloser(strings.NewReader("")), nil
		}
	}
	type row struct{ Name, K2State, ProviderState, Addresses string }
	rows := func(st *Status) []row {
		var out []row
		for _, m := range st.Machines {
			out = append(out, row{m.Name, string(m.State), m.ProviderState, strings.Join(m.ProviderAddresses, ",")})
		}
		return out
	}

	st, err := GetStatus(ctx, s, home, "dev", WithProvider(open(listed{machines: []sdk.Machine{
		{ID: "local-dev-control-plane-0", Name: "dev-control-plane-0", State: sdk.StateRunning, Addresses: []string{"10.0.0.2"}},
		{ID: "local-other-worker-0", Name: "other-worker-0", State: sdk.StateRunning},
	}}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := []row{{"dev-control-plane-0", "ready", "running", "10.0.0.2"}, {"dev-worker-0", "ready", "missing", ""}}
	if diff := cmp.Diff(want, rows(st)); diff != "" {
		t.Errorf("machines (-want +got):\n%s", diff)
	}
	if st.Healthy || !slices.Contains(st.Problems, "machine dev-worker-0 is missing at provider local") || st.ProviderWarning != "" {
		t.Errorf("healthy %v, problems %q, warning %q", st.Healthy, st.Problems, st.ProviderWarning)
	}
	b, _ := json.Marshal(st.Machines[0])
	for _, field := range []string{`"name":"dev-control-plane-0"`, `"providerId":"local-dev-control-plane-0"`, `"state":"ready"`, `"providerState":"running"`, `"providerAddresses":["10.0.0.2"]`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON of a machine lacks %s: %s", field, b)
		}
	}

	for name, o := range map[string]machine.Opener{
		"not started": open(nil, errors.New(`provider "local" did not start: exec format error`)),
		"List fails":  open(listed{err: errors.New("connection refused")}, nil),
	} {
		st, err := GetStatus(ctx, s, home, "dev", WithProvider(o))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := []row{{"dev-control-plane-0", "ready", "", ""}, {"dev-worker-0", "ready", "", ""}}
		if diff := cmp.Diff(want, rows(st)); diff != "" {
			t.Errorf("%s: machines (-want +got):\n%s", name, diff)
		}
		if want := map[string]string{"not started": `provider "local" did not start: exec format error`, "List fails": "provider local: connection refused"}[name] +
			"; the machines' states are k2's records only"; st.ProviderWarning != want {
			t.Errorf("%s: warning %q, want %q", name, st.ProviderWarning, want)
		}
	}
	if opens != 3 {
		t.Errorf("provider opened %d times for 3 statuses, want 3", opens)
	}
}
