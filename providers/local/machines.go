package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k2.dev/k2/providers/sdk"
)

// record is machine.json.
type record struct {
	sdk.Machine
	Command    []string `json:"command"`
	Env        []string `json:"env"`
	PoweredOff bool     `json:"poweredOff,omitempty"`
	// NetNS is the machine's network namespace; empty on the host network.
	NetNS string `json:"netns,omitempty"`
}

func machineDir(stateDir, name string) string {
	return filepath.Join(stateDir, "machines", name)
}

func idOf(name string) string { return "local-" + name }

func nameOf(id string) (string, bool) {
	n, ok := strings.CutPrefix(id, "local-")
	return n, ok && n != "" && !strings.ContainsAny(n, `/\`) && n != "." && n != ".."
}

func readRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, "machine.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".machine.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing machine record: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "machine.json"))
}

// startTime returns a process's start time (field 22 of /proc/<pid>/stat)
// and whether it is alive (exists and is not a zombie).
func startTime(pid int) (string, bool) {
	st, _, alive := procStat(pid)
	return st, alive
}

// procStat reads a process's start time and session id.
func procStat(pid int) (start string, session int, alive bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return "", 0, false
	}
	session, _ = strconv.Atoi(f[3])
	return f[19], session, true
}

// pidOf returns the live process of a machine dir, or 0. The pid file is
// checked first; without a valid one (the plugin died between starting the
// process and writing the file) the process is found by its working
// directory, which start sets to the machine dir.
func pidOf(dir string) int {
	if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if pid, err := strconv.Atoi(f[0]); err == nil && pid > 0 {
				if st, alive := startTime(pid); alive && st == f[1] {
					return pid
				}
			}
		}
	}
	return pidByCwd(dir)
}

// pidByCwd finds a live session leader whose working directory is dir.
func pidByCwd(dir string) int {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != abs {
			continue
		}
		// Only the session leader: children of the machine's process share
		// its working directory.
		if _, sid, alive := procStat(pid); alive && sid == pid {
			return pid
		}
	}
	return 0
}

// start runs the machine's command in a new session, detached from the
// plugin, and records its pid. A machine with a network namespace gets
// its namespace and veth (again, after a host reboot) and runs in it.
func start(stateDir, dir string, r record) error {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	argv := r.Command
	if r.NetNS != "" {
		n, err := ensureNetwork(stateDir)
		if err != nil {
			return err
		}
		if err := ensureMachineNet(stateDir, r.Name, r.Addresses[0], n); err != nil {
			return err
		}
		// nsenter switches only the network namespace and execs the
		// command (unlike `ip netns exec`, which remounts /sys and so hides
		// the cgroup file systems the kubelet needs).
		argv = append([]string{"nsenter", "--net=/run/netns/" + r.NetNS, "--"}, argv...)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(os.Environ()), r.Env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	// Reap it if it dies while this plugin process lives; afterwards init
	// (or the nearest subreaper) does.
	go func() { _ = cmd.Wait() }()
	st, _ := startTime(cmd.Process.Pid)
	return os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprintf("%d %s\n", cmd.Process.Pid, st)), 0o644)
}

// cleanEnv drops go-plugin's variables, which belong to this plugin
// process and not to the machine's.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, "K2_PROVIDER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// stop ends a machine's process group: SIGTERM, then SIGKILL after grace.
func stop(ctx context.Context, dir string) error {
	pid := pidOf(dir)
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	for pidOf(dir) != 0 {
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			time.Sleep(50 * time.Millisecond)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// observe sets a record's State from its process.
func observe(dir string, r *record) {
	pid := pidOf(dir)
	switch {
	case pid != 0:
		r.State, r.Message = sdk.StateRunning, fmt.Sprintf("pid %d", pid)
	case r.PoweredOff:
		r.State, r.Message = sdk.StateStopped, "powered off"
	case r.State == sdk.StatePending:
	default:
		r.State, r.Message = sdk.StateFailed, "process exited: "+logTail(dir)
	}
}

// logTail is the last line of a machine's log, for failure messages.
func logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	last := lines[len(lines)-1]
	if len(last) > 300 {
		last = last[len(last)-300:]
	}
	if last == "" {
		return "no output; see " + filepath.Join(dir, "agent.log")
	}
	return last
}

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
// until ctx ends.
func (p *Provider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	cfg, _ := load(req.Config)
	name, ok := nameOf(req.MachineID)
	if !ok {
		return fmt.Errorf("no machine %q", req.MachineID)
	}
	f, err := os.Open(filepath.Join(machineDir(cfg.StateDir, name), "agent.log"))
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
	}
}

// placeMachine decides a new machine's network: in netns mode workers get
// a namespace and an address on the bridge and run real pods where the
// agent can (runtime from the config); the control plane stays on the
// host, reached at the bridge's address. In host mode every machine is on
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
	if m.Role == "control-plane" {
		return n.Gateway, "", cfg.runtime(), nil
	}
	addr, err = allocAddress(cfg.StateDir, n, m.Name)
	if err != nil {
		return "", "", "", err
	}
	return addr, netnsName(cfg.StateDir, m.Name), cfg.runtime(), nil
}

// cleanupNode removes what a killed agent left (shims, containers, mounts,
// cgroups): `k2 agent cleanup` in the machine's namespace. A cleanly
// stopped agent has done this itself; then it finds nothing.
func cleanupNode(dir string, r record) {
	if len(r.Command) < 2 || r.Command[1] != "agent" {
		return
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+r.NetNS, "--", r.Command[0], "agent", "cleanup",
		"--data-dir", filepath.Join(dir, "data"), "--node-name", r.Name)
	cmd.Env = cleanEnv(os.Environ())
	_ = cmd.Run()
}
