package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/state"
)

// MachinesStep asks the provider for the plan's machines of some roles,
// one Create per machine with the machine's request id, each journaled on
// its own (Do) and recorded in the state store. A resume skips machines
// already made; a machine whose Create was in flight when k2 died is asked
// for again with the same request id, and the provider returns the one it
// made. Cleanup deletes the machines this step made.
type MachinesStep struct {
	// StepName defaults to "machines".
	StepName string
	// Roles to create; empty means all.
	Roles []string
	// Filter, if set, keeps only the machines of Roles it returns true for
	// (the first control-plane machine apart from the others, say).
	Filter   func(MachinePlan) bool
	Provider Provider
	// Config is the environment's provider configuration.
	Config sdk.Config
	// Bootstrap returns the payload for machine m; it may read State
	// (ServerURL, the join token in the store). Nil sends only the plan's
	// bootstrap method.
	Bootstrap func(ctx context.Context, st *State, m MachinePlan) (sdk.Bootstrap, error)
	// Parallel is how many Creates run at once; 0 means 4.
	Parallel int
	// OnCreated, if set, sees each successful Create's response before the
	// machine is journaled as made (the cluster keeps the kubeconfig a
	// Talos provider returns); its error fails the machine.
	OnCreated func(ctx context.Context, st *State, m MachinePlan, resp *sdk.CreateResponse) error
}

var _ Step = (*MachinesStep)(nil)

// MachineResult is what the journal keeps of a created machine.
type MachineResult struct {
	ProviderID string   `json:"providerId"`
	Addresses  []string `json:"addresses,omitempty"`
}

// Name names the step in the journal.
func (s *MachinesStep) Name() string {
	if s.StepName == "" {
		return "machines"
	}
	return s.StepName
}

func (s *MachinesStep) machines(st *State) []MachinePlan {
	var out []MachinePlan
	for _, m := range st.Plan.Machines {
		if (len(s.Roles) == 0 || slices.Contains(s.Roles, m.Role)) && (s.Filter == nil || s.Filter(m)) {
			out = append(out, m)
		}
	}
	return out
}

// Run creates the step's machines (those of its Roles) through the
// provider, Parallel at a time (default 4), each one journaled so that a
// retry never makes it twice; the first failure cancels the rest.
func (s *MachinesStep) Run(ctx context.Context, st *State) error {
	if st.Plan == nil {
		return errors.New("no plan in State")
	}
	ms := s.machines(st)
	par := s.Parallel
	if par <= 0 {
		par = 4
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, m := range ms {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := Do(ctx, st, m.Name, func(ctx context.Context) (MachineResult, error) { return s.create(ctx, st, m) }); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	// Report the real failures, not the cancellations they caused.
	var real []error
	for _, err := range errs {
		if !errors.Is(err, context.Canceled) || ctx.Err() == nil {
			real = append(real, err)
		}
	}
	if len(real) == 0 && len(errs) > 0 {
		real = errs
	}
	return errors.Join(real...)
}

func (s *MachinesStep) create(ctx context.Context, st *State, m MachinePlan) (MachineResult, error) {
	rec := state.Machine{Env: st.Env.Name, Name: m.Name, RequestID: m.RequestID, Pool: m.Pool, Role: m.Role, State: state.MachineRequested}
	if old, err := st.Store.GetMachine(ctx, st.Env.Name, m.Name); err == nil {
		rec = *old // keep what an earlier attempt learnt
		rec.RequestID = m.RequestID
	}
	if err := st.Store.PutMachine(ctx, rec); err != nil {
		return MachineResult{}, err
	}
	b := sdk.Bootstrap{Method: st.Plan.Bootstrap}
	if s.Bootstrap != nil {
		var err error
		if b, err = s.Bootstrap(ctx, st, m); err != nil {
			return MachineResult{}, fmt.Errorf("preparing bootstrap: %w", err)
		}
	}
	st.Progress(m.Name, 0, "asking provider %s (request %s)", st.Env.Provider, m.RequestID)
	mr := m.Request()
	mr.Labels[sdk.LabelEnvironment] = st.Env.Name // providers tag what they make for the environment with it
	resp, err := s.Provider.Create(ctx, &sdk.CreateRequest{
		RequestID: m.RequestID,
		Config:    s.Config,
		Machines:  []sdk.MachineRequest{mr},
		Bootstrap: b,
		OnProgress: func(p sdk.Progress) {
			st.Progress(m.Name, int(p.Percent), "%s", p.Message)
		},
	})
	if err != nil {
		return MachineResult{}, err
	}
	var got *sdk.Machine
	for i := range resp.Machines {
		if resp.Machines[i].Name == m.Name || len(resp.Machines) == 1 {
			got = &resp.Machines[i]
		}
	}
	if got != nil {
		rec.ProviderID, rec.Addresses, rec.State = got.ID, got.Addresses, state.MachineCreated
		if err := st.Store.PutMachine(ctx, rec); err != nil {
			return MachineResult{}, err
		}
	}
	if resp.Diagnostics.HasErrors() {
		return MachineResult{}, usererr.Wrap(usererr.KindProvider, fmt.Errorf("provider %s: %w", st.Env.Provider, resp.Diagnostics.Err()), "")
	}
	if got == nil {
		return MachineResult{}, usererr.New(usererr.KindProvider, "provider %s returned no machine for %s", st.Env.Provider, m.Name)
	}
	if got.State == sdk.StateFailed {
		return MachineResult{}, usererr.New(usererr.KindProvider, "provider %s: machine %s failed: %s", st.Env.Provider, m.Name, got.Message)
	}
	if s.OnCreated != nil {
		if err := s.OnCreated(ctx, st, m, resp); err != nil {
			return MachineResult{}, err
		}
	}
	return MachineResult{ProviderID: got.ID, Addresses: got.Addresses}, nil
}

// Cleanup deletes the step's machines: those with a provider id, and those
// whose Create may have been in flight (found by listing their request id).
func (s *MachinesStep) Cleanup(ctx context.Context, st *State) {
	if st.Plan == nil {
		return
	}
	for _, m := range s.machines(st) {
		rec, err := st.Store.GetMachine(ctx, st.Env.Name, m.Name)
		if err != nil {
			continue // never asked for
		}
		ids := []string{}
		if rec.ProviderID != "" {
			ids = append(ids, rec.ProviderID)
		} else if l, err := s.Provider.List(ctx, &sdk.ListRequest{Config: s.Config, RequestID: m.RequestID}); err == nil {
			for _, pm := range l.Machines {
				ids = append(ids, pm.ID)
			}
		}
		// Delete even with no machine: the provider may have made other
		// things for the request (a security group) before it died.
		if len(ids) > 0 {
			st.Progress(m.Name, 0, "deleting %s", ids[0])
		}
		resp, err := s.Provider.Delete(ctx, &sdk.DeleteRequest{RequestID: m.RequestID, Config: s.Config, MachineIDs: ids})
		if err == nil && resp.Diagnostics.HasErrors() {
			err = resp.Diagnostics.Err()
		}
		if err != nil {
			st.Log.Error("deleting machine during rollback; delete it by hand", "machine", m.Name, "id", ids[0], "err", err)
			continue
		}
		if err := st.Store.DeleteMachine(ctx, st.Env.Name, m.Name); err != nil && !errors.Is(err, state.ErrNotFound) {
			st.Log.Error("forgetting deleted machine", "machine", m.Name, "err", err)
		}
	}
}
