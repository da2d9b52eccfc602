package machine

import (
	"context"
	"fmt"
	"io"
	"slices"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/state"
)

// PowerActions are the actions Power takes.
var PowerActions = []string{sdk.PowerOn, sdk.PowerOff, sdk.PowerReset}

// PowerResult is what `k2 machine power` reports.
type PowerResult struct {
	Env        string `json:"env"`
	Machine    string `json:"machine"`
	ProviderID string `json:"providerId"`
	Action     string `json:"action"`
	// State is the machine's state as the provider reports it after the
	// action (sdk.StateRunning, sdk.StateStopped...).
	State string `json:"state"`
}

// Power switches machine name of env on or off, or resets it, through the
// environment's provider, which must offer the power capability. k2's
// record of the machine is not changed: powered off, it is still the
// environment's machine (`k2 status` shows the provider's state beside it).
func Power(ctx context.Context, s *state.Store, env, name, action string, opener Opener) (*PowerResult, error) {
	if !slices.Contains(PowerActions, action) {
		return nil, usererr.Usage("power action %q: use on, off or reset", action)
	}
	t, prov, closer, err := open(ctx, s, env, name, "power", opener)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	resp, err := prov.Power(ctx, &sdk.PowerRequest{Config: t.Config(), MachineID: t.ID, Action: action})
	if err != nil {
		return nil, providerErr(t.Env.Provider, fmt.Errorf("power %s %s: %w", action, t.Machine.Name, err))
	}
	if resp.Diagnostics.HasErrors() {
		return nil, providerErr(t.Env.Provider, fmt.Errorf("power %s %s: %w", action, t.Machine.Name, resp.Diagnostics.Err()))
	}
	return &PowerResult{Env: env, Machine: t.Machine.Name, ProviderID: t.ID, Action: action, State: resp.State}, nil
}

// Console copies the console (or log) of machine name of env to w
// through the environment's provider, which must offer the console
// capability: what there is so far, or with follow everything that comes
// after too until ctx ends, which is then not an error.
func Console(ctx context.Context, s *state.Store, env, name string, follow bool, w io.Writer, opener Opener) error {
	t, prov, closer, err := open(ctx, s, env, name, "console", opener)
	if err != nil {
		return err
	}
	defer closer.Close()
	err = prov.Console(ctx, &sdk.ConsoleRequest{Config: t.Config(), MachineID: t.ID, Follow: follow, Output: w})
	if follow && ctx.Err() != nil {
		return nil // following ends when the user stops it
	}
	if err != nil {
		return providerErr(t.Env.Provider, fmt.Errorf("console of %s: %w", t.Machine.Name, err))
	}
	return nil
}
