package osinit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// component is one part of k2 init with a lifecycle: Init once, Start
// returns once it runs, Stop undoes Start. Parts that can say when they
// serve also implement readier. The shape is the component manager's of
// issue #22, which k2 init switches to when it lands; until then manager
// below runs them the same way.
type component interface {
	Name() string
	Init(ctx context.Context) error
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// readier is a component that can wait until it serves.
type readier interface {
	Ready(ctx context.Context) error
}

// manager starts components in order, waiting for each to be ready, and
// stops the started ones in reverse.
type manager struct {
	log     *slog.Logger
	comps   []component
	started []component
}

func (m *manager) add(c ...component) { m.comps = append(m.comps, c...) }

// start inits, starts and readies each component in order; on an error it
// stops what it started and names the component that failed.
func (m *manager) start(ctx context.Context) error {
	for _, c := range m.comps {
		if err := c.Init(ctx); err != nil {
			return fmt.Errorf("%s: %w", c.Name(), err)
		}
	}
	for _, c := range m.comps {
		t := time.Now()
		if err := c.Start(ctx); err != nil {
			m.stop(context.WithoutCancel(ctx))
			return fmt.Errorf("starting %s: %w", c.Name(), err)
		}
		m.started = append(m.started, c)
		if r, ok := c.(readier); ok {
			if err := r.Ready(ctx); err != nil {
				m.stop(context.WithoutCancel(ctx))
				return fmt.Errorf("waiting for %s: %w", c.Name(), err)
			}
		}
		m.log.Info("started", "component", c.Name(), "took", time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// stop stops the started components in reverse order and joins their
// errors.
func (m *manager) stop(ctx context.Context) error {
	var errs []error
	for i := len(m.started) - 1; i >= 0; i-- {
		c := m.started[i]
		t := time.Now()
		if err := c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", c.Name(), err))
			continue
		}
		m.log.Info("stopped", "component", c.Name(), "took", time.Since(t).Round(time.Millisecond))
	}
	m.started = nil
	return errors.Join(errs...)
}
