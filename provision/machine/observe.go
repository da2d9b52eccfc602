package machine

import (
	"context"
	"fmt"

	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/state"
)

// StateMissing is the provider state of a machine k2 records but the
// provider does not list (deleted behind k2's back, or never made).
const StateMissing = "missing"

// Live is what the provider reports now of one of k2's machines.
type Live struct {
	// ProviderState is the provider's state of the machine
	// (sdk.StateRunning, sdk.StateStopped...), or StateMissing; empty when
	// the provider was not asked.
	ProviderState string `json:"providerState,omitempty"`
	// ProviderAddresses are the addresses the provider reports now.
	ProviderAddresses []string `json:"providerAddresses,omitempty"`
	// ProviderMessage is the provider's note on the state ("pid 42",
	// "powered off").
	ProviderMessage string `json:"providerMessage,omitempty"`
}

// Problem is what is wrong with a machine in this state, for the health
// of its environment, or "" when nothing is: a machine k2 keeps that is
// stopped, failed or missing.
func (l Live) Problem(env, machine, provider string) string {
	switch l.ProviderState {
	case sdk.StateStopped:
		return fmt.Sprintf("machine %s is stopped (provider %s); 'k2 machine power %s %s on' starts it", machine, provider, env, machine)
	case sdk.StateFailed:
		msg := ""
		if l.ProviderMessage != "" {
			msg = ": " + l.ProviderMessage
		}
		return fmt.Sprintf("machine %s failed (provider %s)%s", machine, provider, msg)
	case StateMissing:
		return fmt.Sprintf("machine %s is missing at provider %s", machine, provider)
	}
	return ""
}

// Observe asks the provider, in one List call with the environment's
// config, for the machines it has, and returns what it reports of each
// of ms (in the order of ms). A machine is matched by its provider id, or
// while k2 has none recorded by its request id (and name); one the
// provider does not list is StateMissing. A failed call is an error: the
// caller shows what the state store knows without it.
func Observe(ctx context.Context, prov Lister, cfg sdk.Config, ms []state.Machine) ([]Live, error) {
	l, err := prov.List(ctx, &sdk.ListRequest{Config: cfg})
	if err != nil {
		return nil, err
	}
	if l.Diagnostics.HasErrors() {
		return nil, l.Diagnostics.Err()
	}
	out := make([]Live, len(ms))
	for i, m := range ms {
		pm := match(l.Machines, m)
		if pm == nil {
			out[i] = Live{ProviderState: StateMissing}
			continue
		}
		out[i] = Live{ProviderState: pm.State, ProviderAddresses: pm.Addresses, ProviderMessage: pm.Message}
	}
	return out, nil
}

// match finds k2's machine m among the provider's machines.
func match(pms []sdk.Machine, m state.Machine) *sdk.Machine {
	if m.ProviderID != "" {
		for i := range pms {
			if pms[i].ID == m.ProviderID {
				return &pms[i]
			}
		}
		return nil
	}
	var byRequest []*sdk.Machine
	for i := range pms {
		if m.RequestID != "" && pms[i].RequestID == m.RequestID {
			if pms[i].Name == m.Name {
				return &pms[i]
			}
			byRequest = append(byRequest, &pms[i])
		}
	}
	if len(byRequest) == 1 {
		return byRequest[0]
	}
	return nil
}
