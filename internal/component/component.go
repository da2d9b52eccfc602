// Package component runs the long-running parts of a k2 process — a
// server's datastore, apiserver and controllers, a node's containerd,
// kubelet and DNS — as components with one lifecycle, supervised by a
// Manager:
//
//	Init  (all, in order)  prepare: check config, write files, take locks
//	Start (one by one)     start; then Run in a goroutine the Manager owns,
//	Ready                  and wait until the component serves
//	Stop  (reverse order)  cancel Run's context, Stop, wait for Run to return
//
// Every goroutine of a component that outlives its Start is its Run,
// started and awaited by the Manager; a component never starts a bare
// goroutine of its own. A component that fails is named in the error (an
// *Error), whether it failed to initialise, to start, to become ready, or
// later while running.
//
// The control plane (provision/controlplane) and the node
// (provision/node) are built from components; `k2 init` and HA servers
// reuse the Manager (docs/design.md).
package component

import (
	"context"
	"fmt"
	"time"
)

// Component is one part of a long-running process.
type Component interface {
	// Name names the component in logs and errors ("kube-apiserver").
	Name() string
	// Init prepares the component without starting it: whatever can fail
	// early (configuration, files, locks). Init is called once, for every
	// component in order, before any Start.
	Init(ctx context.Context) error
	// Start starts the component and returns; ctx bounds the start only.
	// Work that continues afterwards belongs in Run (Runner).
	Start(ctx context.Context) error
	// Stop stops the component and releases what Init and Start took. It
	// is called once, in reverse order, for every component whose Init
	// succeeded — also when Start was never called or failed — so it must
	// cope with a component that is half started. ctx bounds the stop.
	Stop(ctx context.Context) error
}

// Runner is a component with long-running work. The Manager calls Run in
// a goroutine of its own right after Start, with a context that ends when
// the component is stopped. Returning nil means the work is done; an error
// while the component should run is a failure of the component, which the
// Manager reports (Err, Wait) and which aborts a Start in progress.
type Runner interface {
	Run(ctx context.Context) error
}

// Readier is a component that becomes ready some time after Start: Ready
// blocks until it serves, and returns an error if it cannot. The Manager
// starts the next component only once Ready returned nil. ctx ends if the
// start is cancelled or a running component fails.
type Readier interface {
	Ready(ctx context.Context) error
}

// StopWaiter overrides, for one component, how long Stop waits for its Run
// to return (Manager.StopTimeout otherwise). Zero means do not wait: for
// upstream code that never returns, whose goroutines end with the process.
type StopWaiter interface {
	StopTimeout() time.Duration
}

// Error is a component's failure: which component, in which phase (init,
// start, ready, run or stop), and why.
type Error struct {
	Component string
	Phase     string
	Err       error
}

// The phases an Error names.
const (
	PhaseInit  = "init"
	PhaseStart = "start"
	PhaseReady = "ready"
	PhaseRun   = "run"
	PhaseStop  = "stop"
)

func (e *Error) Error() string {
	switch e.Phase {
	case PhaseRun:
		return fmt.Sprintf("%s: %v", e.Component, e.Err)
	case PhaseStop:
		return fmt.Sprintf("stopping %s: %v", e.Component, e.Err)
	case PhaseReady:
		return fmt.Sprintf("waiting for %s: %v", e.Component, e.Err)
	}
	return fmt.Sprintf("starting %s: %v", e.Component, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Func is a component whose only work is run, for parts with nothing to
// prepare or release: the Manager calls run after the components before it
// are ready and cancels its context at Stop.
func Func(name string, run func(ctx context.Context) error) Component {
	return &funcComponent{name: name, run: run}
}

type funcComponent struct {
	name string
	run  func(ctx context.Context) error
}

func (f *funcComponent) Name() string                  { return f.name }
func (f *funcComponent) Init(context.Context) error    { return nil }
func (f *funcComponent) Start(context.Context) error   { return nil }
func (f *funcComponent) Stop(context.Context) error    { return nil }
func (f *funcComponent) Run(ctx context.Context) error { return f.run(ctx) }
