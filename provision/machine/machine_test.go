package machine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/machine"
	"k2.dev/k2/state"
)

// These tests use the real local provider in-process: its machines are
// processes (here a shell that prints a line and sleeps) with a directory
// and an agent.log each.

type fixture struct {
	store *state.Store
	prov  sdk.Provider
	cfg   sdk.Config
}

// newFixture makes environment dev with machines dev-control-plane-0 and
// dev-worker-0 at the local provider, recorded in a state store as a
// deploy records them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg, _ := json.Marshal(map[string]string{"stateDir": t.TempDir(), "network": "host"})
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "dev", Provider: "local", ProviderConfig: cfg}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{store: s, prov: local.New(), cfg: cfg}
	t.Cleanup(func() {
		f.prov.Delete(context.Background(), &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"local-dev-control-plane-0", "local-dev-worker-0"}})
	})
	for _, m := range []struct{ name, role string }{{"dev-control-plane-0", "control-plane"}, {"dev-worker-0", "worker"}} {
		resp, err := f.prov.Create(ctx, &sdk.CreateRequest{RequestID: "req-" + m.name, Config: cfg,
			Machines:  []sdk.MachineRequest{{Name: m.name, Role: m.role, Pool: m.role}},
			Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sh", "-c", "echo booted $$; exec sleep 600"}}})
		if err != nil || resp.Diagnostics.HasErrors() {
			t.Fatalf("Create %s: %v %v", m.name, err, resp.Diagnostics)
		}
		pm := resp.Machines[0]
		if err := s.PutMachine(ctx, state.Machine{Env: "dev", Name: m.name, RequestID: "req-" + m.name, ProviderID: pm.ID,
			Pool: m.role, Role: m.role, Addresses: pm.Addresses, State: state.MachineReady}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// opener hands out p, counting the launches.
func opener(p machine.Provider, launches *int) machine.Opener {
	return func(context.Context, string) (machine.Provider, io.Closer, error) {
		*launches++
		return p, nopCloser{}, nil
	}
}

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

func (f *fixture) observe(t *testing.T) map[string]machine.Live {
	t.Helper()
	ms, err := f.store.ListMachines(context.Background(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	live, err := machine.Observe(context.Background(), f.prov, f.cfg, ms)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]machine.Live{}
	for i, m := range ms {
		l := live[i]
		l.ProviderMessage = "" // holds the pid
		out[m.Name] = l
	}
	return out
}

func console(t *testing.T, f *fixture, name string) string {
	t.Helper()
	var out bytes.Buffer
	n := 0
	if err := machine.Console(context.Background(), f.store, "dev", name, false, &out, opener(f.prov, &n)); err != nil {
		t.Fatalf("Console: %v", err)
	}
	return out.String()
}

// TestPowerOffOnReset: power off stops the worker's process and Observe
// then reports it stopped (a problem for the environment's health), on
// starts it again, reset restarts it; each call names the short or the
// full machine name; the console shows every boot.
func TestPowerOffOnReset(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	launches := 0
	open := opener(f.prov, &launches)
	up := machine.Live{ProviderState: sdk.StateRunning, ProviderAddresses: []string{"127.0.0.1"}}
	if diff := cmp.Diff(map[string]machine.Live{"dev-control-plane-0": up, "dev-worker-0": up}, f.observe(t)); diff != "" {
		t.Errorf("before (-want +got):\n%s", diff)
	}

	r, err := machine.Power(ctx, f.store, "dev", "worker-0", sdk.PowerOff, open)
	if err != nil {
		t.Fatal(err)
	}
	want := &machine.PowerResult{Env: "dev", Machine: "dev-worker-0", ProviderID: "local-dev-worker-0", Action: "off", State: sdk.StateStopped}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("power off (-want +got):\n%s", diff)
	}
	got := f.observe(t)
	if diff := cmp.Diff(map[string]machine.Live{"dev-control-plane-0": up,
		"dev-worker-0": {ProviderState: sdk.StateStopped, ProviderAddresses: []string{"127.0.0.1"}}}, got); diff != "" {
		t.Errorf("after off (-want +got):\n%s", diff)
	}
	if p := got["dev-worker-0"].Problem("dev", "dev-worker-0", "local"); !strings.Contains(p, "stopped") || !strings.Contains(p, "k2 machine power dev dev-worker-0 on") {
		t.Errorf("problem of a stopped machine: %q", p)
	}
	if p := got["dev-control-plane-0"].Problem("dev", "dev-control-plane-0", "local"); p != "" {
		t.Errorf("problem of a running machine: %q", p)
	}

	for i, action := range []string{sdk.PowerOn, sdk.PowerReset} {
		r, err := machine.Power(ctx, f.store, "dev", "dev-worker-0", action, open)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != sdk.StateRunning {
			t.Errorf("power %s: state %s, want running", action, r.State)
		}
		if diff := cmp.Diff(up, f.observe(t)["dev-worker-0"]); diff != "" {
			t.Errorf("after %s (-want +got):\n%s", action, diff)
		}
		// Each boot is a shell of its own, which prints its pid: the
		// first, and one more per action (wait for it to print).
		var boots []string
		for deadline := time.Now().Add(10 * time.Second); len(boots) < i+2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			boots = strings.Fields(strings.ReplaceAll(console(t, f, "worker-0"), "booted", ""))
		}
		if len(boots) != i+2 || boots[i] == boots[i+1] {
			t.Errorf("console after power %s: boots (pids) %q, want %d different", action, boots, i+2)
		}
	}
	if launches != 3 {
		t.Errorf("provider launched %d times for 3 power calls, want 3", launches)
	}
}

// TestConsoleFollow: with follow, Console copies the log as it grows
// (a reset's boot appears) until ctx ends, which is no error.
func TestConsoleFollow(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &testutil.SyncBuffer{}
	done := make(chan error, 1)
	n := 0
	go func() { done <- machine.Console(ctx, f.store, "dev", "worker-0", true, out, opener(f.prov, &n)) }()
	waitFor(t, out, 1)
	if _, err := machine.Power(context.Background(), f.store, "dev", "worker-0", sdk.PowerReset, opener(f.prov, new(int))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, out, 2)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Console after cancel: %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Console did not return after cancel")
	}
}

// waitFor waits until out holds n boots.
func waitFor(t *testing.T, out *testutil.SyncBuffer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "booted") < n {
		if time.Now().After(deadline) {
			t.Fatalf("console shows %d boots, want %d:\n%s", strings.Count(out.String(), "booted"), n, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestObserveMissingAndUnrecorded: a machine the provider no longer has
// is missing (a problem); one whose id k2 never recorded (the deploy died
// after Create) is found by its request id, and Power reaches it too.
func TestObserveMissingAndUnrecorded(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.prov.Delete(ctx, &sdk.DeleteRequest{Config: f.cfg, MachineIDs: []string{"local-dev-control-plane-0"}}); err != nil {
		t.Fatal(err)
	}
	w, err := f.store.GetMachine(ctx, "dev", "dev-worker-0")
	if err != nil {
		t.Fatal(err)
	}
	w.ProviderID, w.State = "", state.MachineRequested
	if err := f.store.PutMachine(ctx, *w); err != nil {
		t.Fatal(err)
	}
	got := f.observe(t)
	want := map[string]machine.Live{"dev-control-plane-0": {ProviderState: machine.StateMissing},
		"dev-worker-0": {ProviderState: sdk.StateRunning, ProviderAddresses: []string{"127.0.0.1"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if p := got["dev-control-plane-0"].Problem("dev", "dev-control-plane-0", "local"); p != "machine dev-control-plane-0 is missing at provider local" {
		t.Errorf("problem: %q", p)
	}
	r, err := machine.Power(ctx, f.store, "dev", "worker-0", sdk.PowerOff, opener(f.prov, new(int)))
	if err != nil || r.ProviderID != "local-dev-worker-0" || r.State != sdk.StateStopped {
		t.Errorf("power off of an unrecorded id: %+v, %v", r, err)
	}
	_, err = machine.Power(ctx, f.store, "dev", "control-plane-0", sdk.PowerOn, opener(f.prov, new(int)))
	if code := usererr.ExitCode(ctx, err); code != 4 || !strings.Contains(fmt.Sprint(err), "no machine") {
		t.Errorf("power on of a deleted machine: exit %d, %v; want 4 and the provider's diagnostic", code, err)
	}
}

// bare offers neither power nor console: what a provider without them
// looks like (an in-test double; the local provider offers both).
type bare struct {
	sdk.UnimplementedProvider
	caps sdk.Capabilities
}

func (b bare) Describe(context.Context, *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{Name: "bare", Capabilities: b.caps}, nil
}

// TestErrors: a missing capability names the provider and the capability
// (exit 4) and starts nothing at the provider; an unknown machine lists
// the environment's machines (exit 2) before any provider is started; a
// bad action is a usage error; a provider that cannot be started is a
// provider error.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	s, err := state.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "dev", Provider: "bare"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateEnv(ctx, state.Environment{Name: "empty", Provider: "bare"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"dev-worker-0", "dev-worker-1"} {
		if err := s.PutMachine(ctx, state.Machine{Env: "dev", Name: n, RequestID: "r-" + n, ProviderID: "id-" + n, Pool: "worker", Role: "worker", State: state.MachineReady}); err != nil {
			t.Fatal(err)
		}
	}
	launches := 0
	noCaps := opener(bare{}, &launches)
	powerOnly := opener(bare{caps: sdk.Capabilities{Power: true}}, &launches)
	broken := func(context.Context, string) (machine.Provider, io.Closer, error) {
		return nil, nil, errors.New("no plugin named bare")
	}
	for _, tc := range []struct {
		name     string
		call     func() error
		code     int
		want     []string
		launches int
	}{
		{"power without the capability", func() error {
			_, err := machine.Power(ctx, s, "dev", "worker-0", "off", noCaps)
			return err
		}, 4, []string{"provider bare does not offer the power capability", "k2 plugin describe bare"}, 1},
		{"console without the capability", func() error {
			return machine.Console(ctx, s, "dev", "worker-0", true, io.Discard, powerOnly)
		}, 4, []string{"provider bare does not offer the console capability (of these it offers power)"}, 1},
		{"unknown machine", func() error {
			_, err := machine.Power(ctx, s, "dev", "worker-9", "on", noCaps)
			return err
		}, 2, []string{`environment dev has no machine "worker-9"`, "its machines: dev-worker-0, dev-worker-1"}, 0},
		{"environment without machines", func() error {
			return machine.Console(ctx, s, "empty", "worker-0", false, io.Discard, noCaps)
		}, 2, []string{`environment empty has no machine "worker-0": it has no machines`, "k2 deploy REF --env empty"}, 0},
		{"unknown environment", func() error {
			return machine.Console(ctx, s, "nope", "worker-0", false, io.Discard, noCaps)
		}, 1, []string{"nope", "k2 env ls"}, 0},
		{"bad action", func() error {
			_, err := machine.Power(ctx, s, "dev", "worker-0", "reboot", noCaps)
			return err
		}, 2, []string{`power action "reboot": use on, off or reset`}, 0},
		{"provider does not start", func() error {
			_, err := machine.Power(ctx, s, "dev", "worker-0", "on", broken)
			return err
		}, 4, []string{"provider bare: no plugin named bare"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			launches = 0
			err := tc.call()
			if code := usererr.ExitCode(ctx, err); code != tc.code {
				t.Errorf("exit code %d, want %d (%v)", code, tc.code, err)
			}
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v lacks %q", err, w)
				}
			}
			if launches != tc.launches {
				t.Errorf("provider started %d times, want %d", launches, tc.launches)
			}
		})
	}
}
