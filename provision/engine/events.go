package engine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// EventKind says what happened.
type EventKind string

// Event kinds. Item events are about one machine or item of a step (Do).
const (
	// EventRunStarted comes first in a run and names its steps in Steps,
	// so a display can list the steps still to come.
	EventRunStarted     EventKind = "run-started"
	EventStepStarted    EventKind = "step-started"
	EventStepDone       EventKind = "step-done"
	EventStepSkipped    EventKind = "step-skipped" // done by an earlier run of this deployment
	EventStepFailed     EventKind = "step-failed"
	EventCleanupStarted EventKind = "cleanup-started"
	EventCleanupDone    EventKind = "cleanup-done"
	EventItemStarted    EventKind = "machine-started"
	EventItemDone       EventKind = "machine-done"
	EventItemSkipped    EventKind = "machine-skipped"
	EventItemFailed     EventKind = "machine-failed"
	EventProgress       EventKind = "progress" // a message from a step, per machine or not
)

// Event is one progress event. Events are data: the plain printer and the
// TUI both consume them; JSON field names are stable.
type Event struct {
	Kind    EventKind     `json:"kind"`
	Time    time.Time     `json:"time"`
	Step    string        `json:"step"`
	Index   int           `json:"index"` // 1-based position of Step in the run
	Total   int           `json:"total"` // number of steps in the run
	Machine string        `json:"machine,omitempty"`
	Attempt int           `json:"attempt,omitempty"`
	Message string        `json:"message,omitempty"`
	Percent int           `json:"percent,omitempty"` // 0..100, 0 unknown
	Elapsed time.Duration `json:"elapsed,omitempty"`
	Err     error         `json:"-"`
	Error   string        `json:"error,omitempty"`
	// Steps are the names of the run's steps, in order (EventRunStarted).
	Steps []string `json:"steps,omitempty"`
}

// Chan returns an event handler that sends each event on ch (blocking);
// for a TUI that reads events in its own loop.
func Chan(ch chan<- Event) func(Event) {
	return func(e Event) { ch <- e }
}

// NewPrinter returns an event handler that writes one plain line per event
// (but EventRunStarted, whose steps the lines show as they come) to w
// (normally stderr), for terminals without the TUI and for logs:
//
//	[2/5] machines: started
//	[2/5] machines: prod-worker-0: creating VM
//	[2/5] machines: done in 3.2s
func NewPrinter(w io.Writer) func(Event) {
	var mu sync.Mutex
	return func(e Event) {
		if e.Kind == EventRunStarted {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(w, formatEvent(e))
	}
}

func formatEvent(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%d/%d] %s: ", e.Index, e.Total, e.Step)
	if e.Machine != "" {
		b.WriteString(e.Machine + ": ")
	}
	switch e.Kind {
	case EventStepStarted, EventItemStarted:
		b.WriteString("started")
		if e.Attempt > 1 {
			fmt.Fprintf(&b, " (attempt %d)", e.Attempt)
		}
	case EventStepDone, EventItemDone:
		fmt.Fprintf(&b, "done in %s", e.Elapsed.Round(time.Millisecond))
	case EventStepSkipped, EventItemSkipped:
		b.WriteString("already done")
	case EventStepFailed:
		if e.Machine != "" { // its item's failure was printed just before
			b.WriteString("failed (the error is above)")
			break
		}
		b.WriteString("failed: " + e.Error)
	case EventItemFailed:
		b.WriteString("failed: " + e.Error)
	case EventCleanupStarted:
		b.WriteString("cleaning up")
	case EventCleanupDone:
		fmt.Fprintf(&b, "cleaned up in %s", e.Elapsed.Round(time.Millisecond))
	case EventProgress:
		if e.Percent > 0 {
			fmt.Fprintf(&b, "%d%% ", e.Percent)
		}
		b.WriteString(e.Message)
	default:
		b.WriteString(string(e.Kind) + " " + e.Message)
	}
	return b.String()
}
