package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"k2.dev/k2/providers/sdk"
)

// provider implements sdk.Provider. Embedding UnimplementedProvider keeps it
// compiling when k2 adds calls to the protocol.
type provider struct {
	sdk.UnimplementedProvider
}

// config is the provider's configuration, as described in schema.
type config struct {
	StateDir  string `json:"stateDir"`
	BootDelay string `json:"bootDelay"`
}

var schema = []sdk.ConfigField{
	{Name: "stateDir", Type: sdk.TypeString, Required: true, Description: "directory holding the machine records"},
	{Name: "bootDelay", Type: sdk.TypeDuration, Default: "0s", Description: "how long each machine takes to boot"},
}

var caps = sdk.Capabilities{
	Architectures: []string{"amd64", "arm64"},
	Classes: []sdk.MachineClass{
		{Name: "small", CPU: 2, MemoryBytes: 4 << 30, DiskBytes: 20 << 30},
		{Name: "large", CPU: 8, MemoryBytes: 32 << 30, DiskBytes: 100 << 30},
	},
	MaxMachines:      10,
	BootstrapMethods: []string{sdk.BootstrapUserData},
	Power:            true,
	Console:          true,
	PersistentDisks:  true,
}

func (p *provider) Describe(ctx context.Context, req *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	return &sdk.DescribeResponse{
		Name:         "example",
		Description:  "a directory pretending to be a cloud (docs/plugins.md)",
		Capabilities: caps,
		ConfigSchema: schema,
	}, nil
}

// load decodes and checks the config; problems are diagnostics.
func load(c sdk.Config) (config, time.Duration, sdk.Diagnostics) {
	ds := sdk.CheckConfig(schema, c)
	var cfg config
	if err := c.Decode(&cfg); err != nil {
		ds.Errorf("config", "%v", err)
	}
	var delay time.Duration
	if cfg.BootDelay != "" {
		delay, _ = time.ParseDuration(cfg.BootDelay) // checked by CheckConfig
	}
	return cfg, delay, ds
}

func (p *provider) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	_, _, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(caps, req.Machines, req.Bootstrap)...)
	return &sdk.ValidateResponse{Diagnostics: ds}, nil
}

func (p *provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	cfg, delay, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(caps, req.Machines, &req.Bootstrap)...)
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	// sdk.Logger's records land in k2's log with provider=example.
	sdk.Logger().Info("creating machines", "request", req.RequestID, "count", len(req.Machines))
	// First pass: refuse names another request owns, before making anything.
	for i, m := range req.Machines {
		rec, err := read(cfg.StateDir, m.Name)
		if err == nil && rec.RequestID != req.RequestID {
			ds.Errorf(fmt.Sprintf("machines[%d].name", i), "machine %q already exists (made by request %s)", m.Name, rec.RequestID)
		}
	}
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	var out []sdk.Machine
	for _, m := range req.Machines {
		rec, err := read(cfg.StateDir, m.Name)
		if errors.Is(err, os.ErrNotExist) {
			// Write the record before booting: a retry after a crash finds
			// it and finishes the boot instead of making a second machine.
			rec = record{Machine: newMachine(req.RequestID, m), UserData: string(req.Bootstrap.UserData)}
			if err := write(cfg.StateDir, rec); err != nil {
				return nil, err
			}
			req.Report(m.Name, "allocated %s", rec.ID)
		} else if err != nil {
			return nil, err
		}
		if rec.State == sdk.StatePending {
			req.Report(m.Name, "booting")
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			rec.State = sdk.StateRunning
			rec.Log = append(rec.Log, "booted with "+fmt.Sprint(len(rec.UserData))+" bytes of user-data")
			if err := write(cfg.StateDir, rec); err != nil {
				return nil, err
			}
		}
		req.Report(m.Name, "running")
		out = append(out, rec.Machine)
	}
	return &sdk.CreateResponse{Machines: out, Diagnostics: ds}, nil
}

func newMachine(reqID string, m sdk.MachineRequest) sdk.Machine {
	arch := m.Arch
	if arch == "" {
		arch = caps.Architectures[0]
	}
	class := caps.Classes[0]
	for _, c := range caps.Classes {
		if c.Name == m.Class {
			class = c
		}
	}
	return sdk.Machine{
		ID: "ex-" + m.Name, Name: m.Name, RequestID: reqID, State: sdk.StatePending,
		Role: m.Role, Pool: m.Pool, Arch: arch, Class: class.Name, CPU: class.CPU, MemoryBytes: class.MemoryBytes,
		Addresses: []string{"192.0.2.1"}, Labels: m.Labels,
	}
}

func (p *provider) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	cfg, _, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.ListResponse{Diagnostics: ds}, nil
	}
	recs, err := readAll(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var out []sdk.Machine
	for _, r := range recs {
		if req.RequestID == "" || r.RequestID == req.RequestID {
			out = append(out, r.Machine)
		}
	}
	return &sdk.ListResponse{Machines: out}, nil
}

func (p *provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	cfg, _, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.DeleteResponse{Diagnostics: ds}, nil
	}
	var deleted []string
	for _, id := range req.MachineIDs {
		name, ok := strings.CutPrefix(id, "ex-")
		if ok {
			if err := os.Remove(filepath.Join(cfg.StateDir, name+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
		}
		deleted = append(deleted, id) // gone now, or never was
	}
	return &sdk.DeleteResponse{Deleted: deleted}, nil
}

func (p *provider) Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error) {
	cfg, _, ds := load(req.Config)
	name, _ := strings.CutPrefix(req.MachineID, "ex-")
	rec, err := read(cfg.StateDir, name)
	if errors.Is(err, os.ErrNotExist) {
		ds.Errorf("machineID", "no machine %q", req.MachineID)
	} else if err != nil {
		return nil, err
	}
	if ds.HasErrors() {
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	switch req.Action {
	case sdk.PowerOff:
		rec.State = sdk.StateStopped
	case sdk.PowerOn, sdk.PowerReset:
		rec.State = sdk.StateRunning
	default:
		ds.Errorf("action", "unknown power action %q; use on, off or reset", req.Action)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	rec.Log = append(rec.Log, "power "+req.Action)
	return &sdk.PowerResponse{State: rec.State}, write(cfg.StateDir, rec)
}

func (p *provider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	cfg, _, _ := load(req.Config)
	name, _ := strings.CutPrefix(req.MachineID, "ex-")
	rec, err := read(cfg.StateDir, name)
	if err != nil {
		return err
	}
	for _, l := range rec.Log {
		if _, err := fmt.Fprintln(req.Output, l); err != nil {
			return err
		}
	}
	return nil
}

// record is one machine's file.
type record struct {
	sdk.Machine
	UserData string   `json:"userData"`
	Log      []string `json:"log"`
}

func read(dir, name string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, name+".json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// write replaces a record atomically.
func write(dir string, r record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+r.Name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, r.Name+".json"))
}

func readAll(dir string) ([]record, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []record
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		r, err := read(dir, name)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
