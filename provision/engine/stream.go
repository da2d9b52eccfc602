package engine

import (
	"context"
	"sync"
)

// Running is a deploy running in a goroutine of its own, whose events
// another loop (the installer's) reads in order with Next. Events are
// queued without bound, so a slow reader never holds the deploy up.
type Running struct {
	cancel context.CancelFunc

	mu     sync.Mutex
	queue  []Event
	wake   chan struct{} // signalled when queue grows or the deploy returns
	done   chan struct{} // closed when the deploy has returned
	res    *DeployResult
	err    error
	closed bool
}

// Go starts run (normally a closure over Deploy or DeployArtifact that
// passes onEvent as OnEvent) in a new goroutine with a context that Stop
// cancels, and returns at once.
func Go(ctx context.Context, run func(ctx context.Context, onEvent func(Event)) (*DeployResult, error)) *Running {
	ctx, cancel := context.WithCancel(ctx)
	r := &Running{cancel: cancel, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		res, err := run(ctx, r.push)
		r.mu.Lock()
		r.res, r.err, r.closed = res, err, true
		r.mu.Unlock()
		cancel()
		close(r.done)
		r.signal()
	}()
	return r
}

func (r *Running) push(e Event) {
	r.mu.Lock()
	if r.closed { // an event from a goroutine a step left behind
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, e)
	r.mu.Unlock()
	r.signal()
}

func (r *Running) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Next returns the deploy's next event, waiting for one. It returns false
// once the deploy has returned and every event has been read; then Wait
// returns at once.
func (r *Running) Next() (Event, bool) {
	for {
		r.mu.Lock()
		if len(r.queue) > 0 {
			e := r.queue[0]
			r.queue = r.queue[1:]
			r.mu.Unlock()
			return e, true
		}
		closed := r.closed
		r.mu.Unlock()
		if closed {
			return Event{}, false
		}
		<-r.wake
	}
}

// Stop cancels the deploy's context: the running step is interrupted and
// the deployment is recorded as interrupted, resumable. Wait for it to
// return with Wait.
func (r *Running) Stop() { r.cancel() }

// Done is closed when the deploy has returned.
func (r *Running) Done() <-chan struct{} { return r.done }

// Wait waits for the deploy to return and returns its result.
func (r *Running) Wait() (*DeployResult, error) {
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res, r.err
}
