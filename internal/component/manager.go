package component

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultStopTimeout is how long Stop waits for a component's Run to
// return when Manager.StopTimeout is zero.
const DefaultStopTimeout = 30 * time.Second

// Manager starts components in order, waits for each to be ready, and
// stops them in reverse. The zero value is not usable; call NewManager.
type Manager struct {
	// ReadyTimeout bounds each component's Ready; zero leaves it to the
	// component and the start context.
	ReadyTimeout time.Duration
	// StopTimeout bounds the wait for each component's Run at Stop; zero
	// is DefaultStopTimeout. A component may override it (StopWaiter).
	StopTimeout time.Duration

	log        *slog.Logger
	components []Component
	failed     chan error // the first failure of a running component

	mu          sync.Mutex
	entries     []*entry                // initialised components, in order
	cancelStart context.CancelCauseFunc // while Start runs
}

// entry is one initialised component and its Run.
type entry struct {
	c      Component
	cancel context.CancelFunc // ends Run's context; nil without Run
	done   chan struct{}      // closed when Run returned; nil without Run
}

// NewManager returns a Manager that logs to log (nil = discard) and runs
// components in the order given.
func NewManager(log *slog.Logger, components ...Component) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{log: log, components: components, failed: make(chan error, 1)}
}

// Add appends components; call it before Start.
func (m *Manager) Add(components ...Component) {
	m.components = append(m.components, components...)
}

// Start initialises every component in order, then starts each one, runs
// it (Runner) and waits until it is ready (Readier) before the next. It
// returns once the last is ready. If any of that fails, or a component
// already running fails meanwhile, or ctx ends, Start stops what it started
// (in reverse) and returns an *Error naming the component. ctx bounds the
// start only: running components live until Stop.
func (m *Manager) Start(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m.mu.Lock()
	m.cancelStart = cancel
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.cancelStart = nil
		m.mu.Unlock()
		if err != nil {
			// Undo with a fresh deadline: ctx may be what ended.
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), m.stopTimeout(nil)+30*time.Second)
			defer scancel()
			if serr := m.Stop(sctx); serr != nil {
				m.log.Warn("stopping after a failed start", "err", serr)
			}
		}
	}()
	for _, c := range m.components {
		if err := c.Init(ctx); err != nil {
			return m.failure(ctx, c, PhaseInit, err)
		}
		m.mu.Lock()
		m.entries = append(m.entries, &entry{c: c})
		m.mu.Unlock()
	}
	for _, e := range m.entries {
		t := time.Now()
		if err := ctx.Err(); err != nil {
			return m.failure(ctx, e.c, PhaseStart, err)
		}
		if err := e.c.Start(ctx); err != nil {
			return m.failure(ctx, e.c, PhaseStart, err)
		}
		if r, ok := e.c.(Runner); ok {
			m.run(ctx, e, r)
		}
		if r, ok := e.c.(Readier); ok {
			if err := m.ready(ctx, r); err != nil {
				return m.failure(ctx, e.c, PhaseReady, err)
			}
		}
		m.log.Debug("component started", "component", e.c.Name(), "took", time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// run starts e's Run in a goroutine the Manager owns.
func (m *Manager) run(ctx context.Context, e *entry, r Runner) {
	// Run outlives the start: keep ctx's values, not its cancellation.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel, e.done = cancel, make(chan struct{})
	go func() {
		defer close(e.done)
		err := r.Run(rctx)
		if err == nil || rctx.Err() != nil {
			return
		}
		ferr := &Error{Component: e.c.Name(), Phase: PhaseRun, Err: err}
		m.log.Error("component failed", "component", e.c.Name(), "err", err)
		m.mu.Lock()
		if m.cancelStart != nil {
			m.cancelStart(ferr)
		}
		m.mu.Unlock()
		select {
		case m.failed <- ferr:
		default: // an earlier failure is already waiting
		}
	}()
}

func (m *Manager) ready(ctx context.Context, r Readier) error {
	if m.ReadyTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.ReadyTimeout)
		defer cancel()
	}
	return r.Ready(ctx)
}

// failure is the error Start returns when c failed in phase: the failure
// of a running component if that is what ended ctx, else c's own.
func (m *Manager) failure(ctx context.Context, c Component, phase string, err error) error {
	var ferr *Error
	if cause := context.Cause(ctx); errors.As(cause, &ferr) {
		// Take it off the channel: Start reports it.
		select {
		case <-m.failed:
		default:
		}
		return ferr
	}
	return &Error{Component: c.Name(), Phase: phase, Err: err}
}

// Err delivers the first failure of a running component (an *Error) after
// Start returned.
func (m *Manager) Err() <-chan error { return m.failed }

// Wait blocks until ctx ends (nil) or a running component fails (its
// *Error).
func (m *Manager) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.failed:
		return err
	}
}

// Stop stops every initialised component in reverse order: it ends Run's
// context, calls Stop, then waits for Run to return (StopTimeout). It
// returns the components' Stop errors, each an *Error. A second Stop does
// nothing.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	entries := m.entries
	m.entries = nil
	m.mu.Unlock()
	var errs []error
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		t := time.Now()
		if e.cancel != nil {
			e.cancel()
		}
		if err := e.c.Stop(ctx); err != nil {
			errs = append(errs, &Error{Component: e.c.Name(), Phase: PhaseStop, Err: err})
		}
		if e.done != nil {
			m.waitRun(ctx, e)
		}
		m.log.Debug("component stopped", "component", e.c.Name(), "took", time.Since(t).Round(time.Millisecond))
	}
	return errors.Join(errs...)
}

func (m *Manager) waitRun(ctx context.Context, e *entry) {
	d := m.stopTimeout(e.c)
	if d <= 0 {
		return
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-e.done:
	case <-timer.C:
		m.log.Warn("component did not stop in time", "component", e.c.Name(), "after", d)
	case <-ctx.Done():
		m.log.Warn("component did not stop before the stop deadline", "component", e.c.Name())
	}
}

func (m *Manager) stopTimeout(c Component) time.Duration {
	if w, ok := c.(StopWaiter); ok {
		return w.StopTimeout()
	}
	if m.StopTimeout > 0 {
		return m.StopTimeout
	}
	return DefaultStopTimeout
}
