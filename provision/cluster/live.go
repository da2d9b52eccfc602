package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/machine"
	"k2.dev/k2/state"
)

// MachineStatus is k2's record of a machine and, when the provider was
// asked, what it reports of the machine now (its JSON fields
// providerState, providerAddresses, providerMessage beside the record's).
type MachineStatus struct {
	state.Machine
	machine.Live
}

// StatusOption configures GetStatus.
type StatusOption func(*statusOptions)

type statusOptions struct {
	open machine.Opener
}

// WithProvider makes GetStatus ask the environment's provider, in one
// List call, what it has of each machine: its state (a machine it no
// longer has is machine.StateMissing) and addresses. A machine that is
// stopped, failed or missing is a problem (the environment is then not
// healthy). A provider that cannot be started or does not answer within
// ProviderTimeout is no error: Status.ProviderWarning says so and the
// rest of the status stands. Without it the provider is not asked.
func WithProvider(open machine.Opener) StatusOption {
	return func(o *statusOptions) { o.open = open }
}

// ProviderTimeout bounds starting the provider and its List call for
// GetStatus.
const ProviderTimeout = 30 * time.Second

// observe adds the provider's view of st's machines.
func (st *Status) observe(ctx context.Context, open machine.Opener) {
	if len(st.Machines) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, ProviderTimeout)
	defer cancel()
	ms := make([]state.Machine, len(st.Machines))
	for i, m := range st.Machines {
		ms[i] = m.Machine
	}
	live, err := func() ([]machine.Live, error) {
		prov, closer, err := open(ctx, st.Env.Provider)
		if err != nil {
			return nil, err
		}
		defer closer.Close()
		return machine.Observe(ctx, prov, sdk.Config(st.Env.ProviderConfig), ms)
	}()
	if err != nil {
		msg := err.Error()
		if !strings.Contains(msg, st.Env.Provider) {
			msg = fmt.Sprintf("provider %s: %s", st.Env.Provider, msg)
		}
		st.ProviderWarning = msg + "; the machines' states are k2's records only"
		return
	}
	for i := range st.Machines {
		st.Machines[i].Live = live[i]
		if p := live[i].Problem(st.Env.Name, ms[i].Name, st.Env.Provider); p != "" {
			st.Problems = append(st.Problems, p)
			st.Healthy = false
		}
	}
}
