// The SDK methods that act on machines: Create, List, Delete, Power and
// Console.

package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"k2.dev/k2/providers/sdk"
)

// Create makes the requested machines, idempotent by request id: each
// machine's record is written before its process starts, so a retry of the
// same request finds it and only starts what is not running. A name taken
// by another request is a diagnostic on machines[i].name. It returns every
// requested machine with its observed state.
func (p *Provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, &req.Bootstrap)...)
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	unlock, err := lock(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for i, m := range req.Machines {
		r, err := readRecord(machineDir(cfg.StateDir, m.Name))
		if err == nil && r.RequestID != req.RequestID {
			ds.Errorf(fmt.Sprintf("machines[%d].name", i), "machine %q already exists (made by request %s); delete it or pick another name", m.Name, r.RequestID)
		}
	}
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	started := false
	for _, m := range req.Machines {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := machineDir(cfg.StateDir, m.Name)
		r, err := readRecord(dir)
		if errors.Is(err, os.ErrNotExist) {
			// The record comes first: a retry finds it and never makes a
			// second machine for this request.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, err
			}
			addr, netns, runtime, err := placeMachine(cfg, m)
			if err != nil {
				return nil, err
			}
			var extra []string
			if netns != "" {
				extra = append(extra, EnvHostNetns+"=/run/netns/"+hostNetnsName(cfg.StateDir))
				extra = append(extra, cfg.nodeEnv(req.Bootstrap)...)
			}
			r = record{
				Machine: sdk.Machine{
					ID: idOf(m.Name), Name: m.Name, RequestID: req.RequestID, State: sdk.StatePending,
					Role: m.Role, Pool: m.Pool, Arch: capabilities().Architectures[0], Class: m.Class,
					CPU: m.CPU, MemoryBytes: m.MemoryBytes, Addresses: []string{addr}, Labels: m.Labels,
				},
				Command: req.Bootstrap.Command,
				Env:     append(machineEnv(dir, addr, m, req.Bootstrap), append(extra, EnvRuntime+"="+runtime)...),
				NetNS:   netns,
			}
			if r.CPU == 0 {
				r.CPU = defaultCPU
			}
			if r.MemoryBytes == 0 {
				r.MemoryBytes = defaultMemory
			}
			if err := writeRecord(dir, r); err != nil {
				return nil, err
			}
			req.Report(m.Name, "created %s", dir)
		} else if err != nil {
			return nil, fmt.Errorf("reading machine %s: %w", m.Name, err)
		}
		if pidOf(dir) == 0 && !r.PoweredOff {
			req.Report(m.Name, "starting %s", r.Command[0])
			if err := start(cfg.StateDir, dir, r); err != nil {
				return nil, err
			}
			started = true
		}
	}
	if started {
		// Let a command that cannot run at all fail now rather than later.
		time.Sleep(100 * time.Millisecond)
	}
	var out []sdk.Machine
	for _, m := range req.Machines {
		dir := machineDir(cfg.StateDir, m.Name)
		r, err := readRecord(dir)
		if err != nil {
			return nil, err
		}
		if r.State == sdk.StatePending {
			r.State = sdk.StateRunning
			if err := writeRecord(dir, r); err != nil {
				return nil, err
			}
		}
		observe(dir, &r)
		req.Report(m.Name, "%s", r.State)
		out = append(out, r.Machine)
	}
	return &sdk.CreateResponse{Machines: out, Diagnostics: ds}, nil
}

// List returns the machines under the state directory (those of one
// request if RequestID is set), each with the state of its process.
func (p *Provider) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	cfg, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.ListResponse{Diagnostics: ds}, nil
	}
	entries, err := os.ReadDir(filepath.Join(cfg.StateDir, "machines"))
	if errors.Is(err, os.ErrNotExist) {
		return &sdk.ListResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	var out []sdk.Machine
	for _, e := range entries {
		dir := machineDir(cfg.StateDir, e.Name())
		r, err := readRecord(dir)
		if err != nil {
			continue // a directory being created or removed
		}
		if req.RequestID != "" && r.RequestID != req.RequestID {
			continue
		}
		observe(dir, &r)
		out = append(out, r.Machine)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return &sdk.ListResponse{Machines: out}, nil
}

// Delete stops each machine's process group, cleans up after an agent in
// its own network namespace, and removes its directory; the bridge goes
// with the last machine. An id that names no machine counts as deleted.
func (p *Provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	cfg, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.DeleteResponse{Diagnostics: ds}, nil
	}
	unlock, err := lock(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var deleted []string
	for _, id := range req.MachineIDs {
		if name, ok := nameOf(id); ok {
			dir := machineDir(cfg.StateDir, name)
			if err := stop(ctx, dir); err != nil {
				return nil, err
			}
			if r, err := readRecord(dir); err == nil && r.NetNS != "" {
				cleanupNode(dir, r)
				removeMachineNet(cfg.StateDir, name)
			}
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("removing %s: %w", dir, err)
			}
			if remainingMachines(cfg.StateDir) == 0 {
				removeNetwork(cfg.StateDir)
			}
		}
		deleted = append(deleted, id) // gone now, or never was
	}
	return &sdk.DeleteResponse{Deleted: deleted}, nil
}

// Power turns a machine off (stop, and stay stopped across Create
// retries), on (start its process again) or resets it (stop, then start).
func (p *Provider) Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error) {
	cfg, ds := load(req.Config)
	name, ok := nameOf(req.MachineID)
	var r record
	var err error
	if ok {
		r, err = readRecord(machineDir(cfg.StateDir, name))
	}
	if !ok || errors.Is(err, os.ErrNotExist) {
		ds.Errorf("machineID", "no machine %q", req.MachineID)
	} else if err != nil {
		return nil, err
	}
	if ds.HasErrors() {
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	unlock, err := lock(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := machineDir(cfg.StateDir, name)
	switch req.Action {
	case sdk.PowerOff, sdk.PowerReset:
		if err := stop(ctx, dir); err != nil {
			return nil, err
		}
		r.PoweredOff = req.Action == sdk.PowerOff
	case sdk.PowerOn:
		r.PoweredOff = false
	default:
		ds.Errorf("action", "unknown power action %q; use on, off or reset", req.Action)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	if !r.PoweredOff && pidOf(dir) == 0 {
		if err := start(cfg.StateDir, dir, r); err != nil {
			return nil, err
		}
	}
	if err := writeRecord(dir, r); err != nil {
		return nil, err
	}
	observe(dir, &r)
	return &sdk.PowerResponse{State: r.State}, nil
}

// Console copies the machine's log; with Follow it keeps copying new output
// until ctx ends or the machine is deleted.
func (p *Provider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	cfg, _ := load(req.Config)
	name, ok := nameOf(req.MachineID)
	if !ok {
		return fmt.Errorf("no machine %q", req.MachineID)
	}
	dir := machineDir(cfg.StateDir, name)
	f, err := os.Open(filepath.Join(dir, "agent.log"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		if _, err := io.Copy(req.Output, f); err != nil {
			return err
		}
		if !req.Follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := readRecord(dir); errors.Is(err, os.ErrNotExist) {
			_, err := io.Copy(req.Output, f) // its last words
			return err
		}
	}
}

// placeMachine decides a new machine's network: in netns mode every
// machine, the control plane's too, gets a namespace and an address on the
// bridge (the host reaches them all through the bridge's address); agents
// run real pods where they can (runtime from the config). The control
// plane's routing table is then its own: `k2 server` routes the cluster's
// pod and service ranges there (--cluster-routes), where they cannot clash
// with another cluster on this host. In host mode every machine is on
// 127.0.0.1 and agents simulate pods (real nodes on one network would
// clash).
func placeMachine(cfg config, m sdk.MachineRequest) (addr, netns, runtime string, err error) {
	if cfg.networkMode() != NetworkNetns {
		return "127.0.0.1", "", "sim", nil
	}
	n, err := ensureNetwork(cfg.StateDir)
	if err != nil {
		return "", "", "", err
	}
	addr, err = allocAddress(cfg.StateDir, n, m.Name)
	if err != nil {
		return "", "", "", err
	}
	return addr, netnsName(cfg.StateDir, m.Name), cfg.runtime(), nil
}
