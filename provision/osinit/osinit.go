// Package osinit is `k2 init`: the init of k2 OS and the supervisor of a
// machine's k2 processes.
//
// As PID 1 of the k2 OS image (Options.Machine) it sets the machine up —
// mounts, kernel modules, network by DHCP or from the config, host name,
// the data disk on /var/lib/k2 — finds the machine config (the kernel
// command line's k2.config=URL, a NoCloud cidata volume, EC2 IMDSv2
// user-data, in that order), runs `k2 server` and/or `k2 agent` as its
// children, restarts them when they die, and powers off or reboots cleanly
// on the ACPI power button, a signal or its API.
//
// On a machine that is already booted (cloud-init on a stock Linux image,
// a network namespace standing in for a machine in tests) `k2 init
// --config FILE|URL` does only the second half: it reads that config (or
// searches the same sources) and supervises the same processes until it
// is stopped.
package osinit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"k2.dev/k2/internal/component"
	"k2.dev/k2/provision/machineconfig"
)

// Defaults.
const (
	DefaultDataDir = "/var/lib/k2"
	DefaultSocket  = "/run/k2/init.sock"
)

// Options configure Run. K2Binary is required.
type Options struct {
	// Config names the machine config (a file or an http(s) URL); empty
	// searches the kernel command line, cidata and IMDS.
	Config string
	// Sources replace the default search (tests).
	Sources []Source
	// IMDSEndpoint points the IMDS source at another endpoint (a fake).
	IMDSEndpoint string
	// Cmdline is the kernel command line file; default /proc/cmdline.
	Cmdline string
	// DataDir holds server/ and agent/; default /var/lib/k2.
	DataDir string
	// K2Binary is the k2 executable the children run.
	K2Binary string
	// Socket is the API's unix socket; default /run/k2/init.sock.
	Socket string
	// Machine: k2 init is PID 1 of k2 OS and sets the machine up.
	Machine bool
	// RetryInterval is the first wait between attempts to find a usable
	// config (doubling up to 30 s); default 5 s.
	RetryInterval time.Duration
	// Console receives the children's output; default os.Stderr.
	Console io.Writer
	Logger  *slog.Logger
	// OnConfig, if set, is called with the config once it is loaded (tests).
	OnConfig func(*machineconfig.Config)
}

// Actions a shutdown request can ask for.
const (
	ActionPowerOff = "poweroff"
	ActionReboot   = "reboot"
	ActionStop     = "stop" // stop the children; k2 init exits (not PID 1)
)

// runner is one run of k2 init.
type runner struct {
	o       Options
	log     *slog.Logger
	console *console
	reaper  *reaper
	mach    *machine

	mu        sync.Mutex
	phase     string
	source    string
	cfg       *machineconfig.Config
	procs     []*process
	action    string
	shutdown  chan struct{} // closed by requestShutdown
	lastError string
}

// Run runs k2 init until ctx ends or a shutdown is requested. As PID 1 it
// then powers the machine off or reboots it and does not return.
func Run(ctx context.Context, o Options) error {
	if o.K2Binary == "" {
		return errors.New("the k2 binary path is required")
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.Cmdline == "" {
		o.Cmdline = "/proc/cmdline"
	}
	if o.RetryInterval == 0 {
		o.RetryInterval = 5 * time.Second
	}
	if o.Console == nil {
		o.Console = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	r := &runner{o: o, log: o.Logger, console: &console{w: o.Console}, reaper: newReaper(), shutdown: make(chan struct{})}
	if o.Machine {
		r.mach = newMachine(r)
		if err := r.mach.prepareRoot(); err != nil {
			r.log.Error("preparing the root file system", "err", err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The base: what runs before and beside the children, from the config
	// search to the shutdown (internal/component's manager, as the control
	// plane and the node use it).
	base := component.NewManager(r.log, component.Func("reaper", r.reaper.run))
	if r.mach != nil {
		base.Add(r.mach.components()...)
	}
	base.Add(component.Func("shutdown", func(ctx context.Context) error {
		select {
		case <-r.shutdown:
			cancel()
		case <-ctx.Done():
		}
		return nil
	}), &apiServer{r: r})
	if err := base.Start(ctx); err != nil {
		if !o.Machine {
			return err
		}
		r.log.Error("setting the machine up", "err", err)
	}
	err := r.run(runCtx)
	if o.Machine && err != nil && r.requested() == "" {
		r.log.Error("k2 init cannot go on: "+err.Error()+"; press the power button or run 'k2 init poweroff' (a shell: /bin/sh on the console)", "err", err)
		<-r.shutdown
	}
	stopCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer stop()
	if serr := base.Stop(stopCtx); serr != nil {
		r.log.Warn("stopping", "err", serr)
	}
	if o.Machine {
		r.mach.finish(r.actionOr(ActionPowerOff)) // does not return
	}
	if err != nil && runCtx.Err() != nil {
		return nil // stopped while starting
	}
	return err
}

// run finds the config, sets the machine up for it and supervises the
// children until ctx ends: the workload manager holds the config's
// machine settings and data disk (as PID 1), then the server and agent.
func (r *runner) run(ctx context.Context) error {
	cfg, err := r.findConfig(ctx)
	if err != nil {
		return err
	}
	procs, err := r.children(cfg)
	if err != nil {
		return err
	}
	w := component.NewManager(r.log)
	if r.mach != nil {
		w.Add(&machineSettings{m: r.mach, cfg: cfg})
		if cfg.DataDisk != nil {
			w.Add(&dataDisk{m: r.mach, cfg: cfg.DataDisk, dir: r.o.DataDir})
		}
	}
	for _, p := range procs {
		w.Add(p)
	}
	r.mu.Lock()
	r.procs = procs
	r.mu.Unlock()
	r.setPhase("starting")
	err = w.Start(ctx)
	if err == nil {
		r.setPhase("running")
		fmt.Fprintf(r.console, "k2 init: %s running (%s)\n", describeRole(cfg), strings.Join(names(procs), ", "))
		err = w.Wait(ctx)
	}
	r.setPhase("stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if serr := w.Stop(stopCtx); serr != nil {
		r.log.Error("stopping", "err", serr)
	}
	r.setPhase("stopped")
	if err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// sources are the places searched for a config, in order.
func (r *runner) sources() []Source {
	if r.o.Sources != nil {
		return r.o.Sources
	}
	if r.o.Config != "" {
		return []Source{&RefSource{Ref: r.o.Config}}
	}
	cmdline := ReadCmdline(r.o.Cmdline)
	imds := r.o.IMDSEndpoint
	if imds == "" {
		imds = cmdline[CmdlineIMDS]
	}
	cs, is := &CmdlineSource{Cmdline: cmdline}, &IMDSSource{Endpoint: imds}
	if r.mach != nil {
		// As PID 1 the network comes up beside the search: the sources
		// that need it wait for an address (bounded) once they apply.
		cs.Ready, is.Ready = r.mach.waitNetworkFor, r.mach.waitNetworkFor
	}
	return []Source{cs, &CIDataSource{}, is}
}

// findConfig searches the sources until one holds a valid config, saying on
// the console what it tried and what is wrong, and retrying.
func (r *runner) findConfig(ctx context.Context) (*machineconfig.Config, error) {
	r.setPhase("finding config")
	wait := r.o.RetryInterval
	sources := r.sources()
	for {
		b, src, err := Find(ctx, sources)
		var cfg *machineconfig.Config
		if err == nil {
			var warns []string
			cfg, warns, err = machineconfig.Load(b)
			for _, w := range warns {
				r.log.Warn("machine config: "+w, "source", src)
			}
			if err != nil {
				err = fmt.Errorf("machine config from %s: %w", src, err)
			}
		}
		if err == nil {
			r.mu.Lock()
			r.cfg, r.source, r.lastError = cfg, src, ""
			r.mu.Unlock()
			r.log.Info("machine config found", "source", src, "config", cfg)
			if r.o.OnConfig != nil {
				r.o.OnConfig(cfg)
			}
			return cfg, nil
		}
		r.mu.Lock()
		r.lastError = err.Error()
		r.mu.Unlock()
		r.log.Error(err.Error(), "retry", wait)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// requestShutdown asks Run to stop the children and then do action.
func (r *runner) requestShutdown(action string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.action != "" {
		return
	}
	r.action = action
	r.log.Info("shutdown requested", "action", action)
	close(r.shutdown)
}

// requested is the shutdown action asked for, or "".
func (r *runner) requested() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.action
}

func (r *runner) actionOr(def string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.action == "" || r.action == ActionStop {
		return def
	}
	return r.action
}

func describeRole(cfg *machineconfig.Config) string {
	s := cfg.Role
	if cfg.NodeName != "" {
		s += " " + cfg.NodeName
	}
	return s
}

func names(ps []*process) []string {
	var out []string
	for _, p := range ps {
		out = append(out, "k2 "+p.name)
	}
	return out
}

// Status is what the API's GET /status (k2 init status) reports.
type Status struct {
	Phase     string          `json:"phase"`
	Machine   bool            `json:"machine"`
	Source    string          `json:"source,omitempty"`
	Role      string          `json:"role,omitempty"`
	Node      string          `json:"node,omitempty"`
	Processes []processStatus `json:"processes"`
	Addresses []string        `json:"addresses,omitempty"`
	DataDisk  string          `json:"dataDisk,omitempty"`
	LastError string          `json:"lastError,omitempty"`
}

func (r *runner) status() Status {
	r.mu.Lock()
	s := Status{Phase: r.phase, Machine: r.o.Machine, Source: r.source, LastError: r.lastError, Processes: []processStatus{}}
	if r.cfg != nil {
		s.Role, s.Node = r.cfg.Role, r.cfg.NodeName
	}
	procs := r.procs
	r.mu.Unlock()
	for _, p := range procs {
		s.Processes = append(s.Processes, p.status())
	}
	if r.mach != nil {
		s.Addresses, s.DataDisk = r.mach.addresses(), r.mach.dataDisk()
	}
	return s
}

var errUnknownAction = errors.New("unknown action")

func parseAction(path string) (string, error) {
	switch a := strings.TrimPrefix(path, "/"); a {
	case ActionPowerOff, ActionReboot, ActionStop:
		return a, nil
	}
	return "", fmt.Errorf("%w %q: want poweroff, reboot or stop", errUnknownAction, path)
}
