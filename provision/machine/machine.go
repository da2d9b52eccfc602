// Package machine is what k2 does to one machine of an environment through
// the environment's provider once it exists: switch it on, off or reset it
// (Power), stream its console or log (Console), and compare k2's records
// of the environment's machines with what the provider reports now
// (Observe, for `k2 status`).
//
// The provider comes in as an interface that cmd injects (*host.Client, a
// launched plugin, implements it, as does any sdk.Provider); machines are
// named as k2 records them in the state store.
package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

// Lister is the part of a provider that Observe needs.
type Lister interface {
	List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error)
}

// Provider is what Power and Console need of a provider.
type Provider interface {
	engine.Describer
	Lister
	Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error)
	Console(ctx context.Context, req *sdk.ConsoleRequest) error
}

var _ Provider = (sdk.Provider)(nil)

// Opener starts the provider plugin named name; the caller closes it.
// cmd injects it (host.Find + host.Launch), so that nothing is started
// before the environment and the machine are known.
type Opener func(ctx context.Context, name string) (Provider, io.Closer, error)

// Target is one machine of an environment, resolved to the provider's id.
type Target struct {
	Env     *state.Environment
	Machine state.Machine
	// ID is the provider's id of the machine: the recorded one, or, when
	// the deploy that made it stopped before recording it, the one the
	// provider lists for its request id.
	ID string
}

// Config is the environment's provider configuration.
func (t *Target) Config() sdk.Config { return sdk.Config(t.Env.ProviderConfig) }

// find resolves machine name of env in the state store. name is the
// machine's name ("prod-worker-0") or that name without the environment's
// prefix ("worker-0"). An unknown machine is a usage error listing env's
// machines.
func find(ctx context.Context, s *state.Store, env, name string) (*state.Environment, *state.Machine, error) {
	e, err := s.GetEnv(ctx, env)
	if err != nil {
		return nil, nil, engine.UserError(err)
	}
	ms, err := s.ListMachines(ctx, env)
	if err != nil {
		return nil, nil, err
	}
	for _, full := range []string{name, env + "-" + name} {
		for i := range ms {
			if ms[i].Name == full {
				return e, &ms[i], nil
			}
		}
	}
	if len(ms) == 0 {
		return nil, nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("environment %s has no machine %q: it has no machines", env, name),
			fmt.Sprintf("deploy it first ('k2 deploy REF --env %s')", env))
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return nil, nil, usererr.Wrap(usererr.KindUsage, fmt.Errorf("environment %s has no machine %q", env, name),
		"its machines: "+strings.Join(names, ", "))
}

// open finds machine name of env, starts the environment's provider,
// checks that it offers capability ("power", "console") and finds the
// provider's id for the machine. The caller closes the provider.
func open(ctx context.Context, s *state.Store, env, name, capability string, opener Opener) (*Target, Provider, io.Closer, error) {
	e, m, err := find(ctx, s, env, name)
	if err != nil {
		return nil, nil, nil, err
	}
	prov, closer, err := opener(ctx, e.Provider)
	if err != nil {
		return nil, nil, nil, providerErr(e.Provider, err)
	}
	t, err := resolve(ctx, e, m, capability, prov)
	if err != nil {
		closer.Close()
		return nil, nil, nil, err
	}
	return t, prov, closer, nil
}

// resolve checks that prov offers capability and finds its id for m.
func resolve(ctx context.Context, e *state.Environment, m *state.Machine, capability string, prov Provider) (*Target, error) {
	if err := require(ctx, prov, e.Provider, capability); err != nil {
		return nil, err
	}
	t := &Target{Env: e, Machine: *m, ID: m.ProviderID}
	if t.ID != "" {
		return t, nil
	}
	// The deploy that asked for it stopped before recording the id.
	l, err := prov.List(ctx, &sdk.ListRequest{Config: t.Config(), RequestID: m.RequestID})
	if err != nil {
		return nil, providerErr(e.Provider, err)
	}
	if l.Diagnostics.HasErrors() {
		return nil, providerErr(e.Provider, l.Diagnostics.Err())
	}
	for _, pm := range l.Machines {
		if pm.Name == m.Name || len(l.Machines) == 1 {
			t.ID = pm.ID
			return t, nil
		}
	}
	return nil, usererr.New(usererr.KindProvider, "machine %s of %s does not exist at provider %s (k2 asked for it, request %s, but the provider has none); 'k2 resume %s' makes it",
		m.Name, e.Name, e.Provider, m.RequestID, e.Name)
}

// require fails with a *engine.CapabilityError (a provider error, exit 4)
// when the provider does not advertise capability.
func require(ctx context.Context, prov engine.Describer, provider, capability string) error {
	d, err := prov.Describe(ctx, &sdk.DescribeRequest{})
	if err != nil {
		return providerErr(provider, err)
	}
	has := map[string]bool{"power": d.Capabilities.Power, "console": d.Capabilities.Console}
	if has[capability] {
		return nil
	}
	var offers []string
	for _, c := range []string{"power", "console"} {
		if has[c] {
			offers = append(offers, c)
		}
	}
	slices.Sort(offers)
	detail := fmt.Sprintf("provider %s does not offer the %s capability", provider, capability)
	if len(offers) > 0 {
		detail += " (of these it offers " + strings.Join(offers, ", ") + ")"
	}
	return usererr.Wrap(usererr.KindProvider, &engine.CapabilityError{Provider: provider, Capability: capability, Detail: detail},
		fmt.Sprintf("see what it offers with 'k2 plugin describe %s'", provider))
}

// providerErr marks err from the provider's call as a provider error
// (exit 4) unless it already is a user error.
func providerErr(provider string, err error) error {
	var ue *usererr.Error
	if errors.As(err, &ue) {
		return err
	}
	return usererr.Wrap(usererr.KindProvider, fmt.Errorf("provider %s: %w", provider, err), "")
}
