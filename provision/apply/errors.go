package apply

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinels wrapped by the errors Apply returns; test them with errors.Is.
var (
	// ErrUnstableAPI: an object names an alpha or beta apiVersion and
	// Options.AllowBeta is false.
	ErrUnstableAPI = errors.New("alpha/beta API refused")
	// ErrBetaOnly: an object without apiVersion has a kind the server serves
	// only as alpha or beta.
	ErrBetaOnly = errors.New("kind has no stable version")
	// ErrAmbiguousKind: an object without apiVersion has a kind that several
	// API groups serve.
	ErrAmbiguousKind = errors.New("kind served by several API groups")
	// ErrUnknownKind: the server does not serve the kind (or not in that
	// group or version).
	ErrUnknownKind = errors.New("kind not served")
	// ErrInvalidObject: an object lacks a kind or name, or cannot be read.
	ErrInvalidObject = errors.New("invalid object")
	// ErrNotReady: Options.Wait timed out before every object was ready.
	ErrNotReady = errors.New("objects not ready")
)

// Problem is one object Apply refused before applying anything.
type Problem struct {
	Object ObjectRef `json:"object"`
	Source string    `json:"source,omitempty"`
	Err    error     `json:"-"`
	// Message is Err's text, for JSON.
	Message string `json:"message"`
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Source != "" {
		b.WriteString(p.Source + ": ")
	}
	b.WriteString(p.Object.String() + ": " + p.Err.Error())
	return b.String()
}

// RefusedError lists every object refused before anything was applied:
// unstable or unknown APIs, ambiguous kinds, invalid objects. Nothing was
// sent to the server.
type RefusedError struct {
	Problems []Problem
}

// maxShown caps the problems printed in one error message.
const maxShown = 20

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "refusing %d object(s); nothing was applied:", len(e.Problems))
	for i, p := range e.Problems {
		if i == maxShown {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Problems)-maxShown)
			break
		}
		b.WriteString("\n  " + p.String())
	}
	return b.String()
}

// Unwrap returns the problems' errors, so errors.Is finds the sentinels.
func (e *RefusedError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p.Err
	}
	return errs
}

// ObjectError is an object the server rejected.
type ObjectError struct {
	Object ObjectRef
	Source string
	Err    error
}

func (e *ObjectError) Error() string {
	s := "applying " + e.Object.String()
	if e.Source != "" {
		s += " (" + e.Source + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *ObjectError) Unwrap() error { return e.Err }

// NotReadyError lists the objects that were not ready when the wait timed out.
type NotReadyError struct {
	Objects []ObjectResult
}

func (e *NotReadyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d object(s) not ready:", len(e.Objects))
	for i, o := range e.Objects {
		if i == maxShown {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Objects)-maxShown)
			break
		}
		fmt.Fprintf(&b, "\n  %s: %s", o.Object, o.Status)
		for _, ev := range o.Events {
			fmt.Fprintf(&b, "\n    event: %s", ev)
		}
	}
	return b.String()
}

func (e *NotReadyError) Unwrap() error { return ErrNotReady }

// ErrStuck means an object will not become ready without a change (see Wait).
var ErrStuck = errors.New("will not become ready")

// StuckError is an object that will not become ready by waiting longer:
// one of its pods has an image that cannot be pulled, a container that
// keeps crashing, a configuration that cannot be made, or needs a resource
// no node has. It names all of it and what to do.
type StuckError struct {
	Object    ObjectRef     `json:"object"`
	Pod       string        `json:"pod"`
	Node      string        `json:"node,omitempty"`
	Container string        `json:"container,omitempty"`
	Image     string        `json:"image,omitempty"`
	Reason    string        `json:"reason"`            // the kubelet's or scheduler's: ImagePullBackOff, CrashLoopBackOff, Unschedulable…
	Message   string        `json:"message,omitempty"` // the kubelet's or scheduler's message
	Detail    string        `json:"detail,omitempty"`  // k2's finding (which resource no node has)
	For       time.Duration `json:"for,omitempty"`     // how long it has been so
	Restarts  int32         `json:"restarts,omitempty"`
	LastExit  *int32        `json:"lastExitCode,omitempty"`
	// Logs are the container's last log lines (CrashLoopBackOff).
	Logs []string `json:"logs,omitempty"`
	// Hint says what to do.
	Hint string `json:"hint"`
}

func (e *StuckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: pod %s", shortRef(e.Object), ErrStuck, e.Pod)
	var what []string
	if e.Container != "" {
		what = append(what, "container "+e.Container)
	}
	if e.Image != "" {
		what = append(what, "image "+e.Image)
	}
	if e.Node != "" {
		what = append(what, "on "+e.Node)
	}
	if len(what) > 0 {
		b.WriteString(" (" + strings.Join(what, ", ") + ")")
	}
	b.WriteString(": " + e.Reason)
	switch {
	case e.Reason == ReasonCrashLoopBackOff || e.Restarts > 0 && e.LastExit != nil:
		fmt.Fprintf(&b, " after %d restarts", e.Restarts)
		if e.LastExit != nil {
			fmt.Fprintf(&b, ", last exit code %d", *e.LastExit)
		}
	case e.For >= time.Second:
		fmt.Fprintf(&b, " for %s", e.For)
	}
	if e.Message != "" {
		b.WriteString(": " + oneLine(e.Message, podProblemMessageMaxSize))
	}
	if e.Detail != "" {
		b.WriteString(" — " + e.Detail)
	}
	if len(e.Logs) == 0 {
		b.WriteString("; " + e.Hint)
		return b.String()
	}
	b.WriteString("\n  its last log lines:")
	for _, l := range e.Logs {
		b.WriteString("\n    | " + l)
	}
	b.WriteString("\n  what to do: " + e.Hint)
	return b.String()
}

func (e *StuckError) Unwrap() error { return ErrStuck }

// oneLine joins the lines of s and cuts it to at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
