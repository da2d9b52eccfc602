// Package usererr marks errors whose message is safe and useful to show a
// user, attaches a hint of what to do, and maps errors to k2's exit codes.
package usererr

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error for the exit code.
type Kind int

// Exit codes, as documented in the README.
const (
	KindFailure     Kind = 1   // anything else that went wrong
	KindUsage       Kind = 2   // bad flags or arguments
	KindInvalid     Kind = 3   // invalid K8sfile or configuration
	KindProvider    Kind = 4   // a provider plugin failed or refused
	KindRegistry    Kind = 5   // registry or authentication error
	KindInterrupted Kind = 130 // the user interrupted (Ctrl-C, SIGTERM)
)

// Error is an error a user can act on: what went wrong and, in Hint, what to do.
type Error struct {
	Kind Kind
	Err  error
	Hint string
}

func (e *Error) Error() string {
	if e.Hint == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + "; " + e.Hint
}

func (e *Error) Unwrap() error { return e.Err }

// New returns a user-facing error of kind k with a formatted message.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Err: fmt.Errorf(format, args...)}
}

// Wrap marks err as user-facing with kind k and a hint; nil stays nil.
func Wrap(k Kind, err error, hint string) error {
	if err == nil {
		return nil
	}
	return &Error{Kind: k, Err: err, Hint: hint}
}

// Usage returns a usage error (exit code 2).
func Usage(format string, args ...any) error { return New(KindUsage, format, args...) }

// Render returns the text to print for err.
func Render(err error) string { return err.Error() }

// ExitCode maps err to k2's exit code. An error caused by the cancellation of
// ctx (the signal context made by main) is an interruption.
func ExitCode(ctx context.Context, err error) int {
	if err == nil {
		return 0
	}
	var ue *Error
	if errors.As(err, &ue) {
		return int(ue.Kind)
	}
	if errors.Is(err, context.Canceled) || (ctx != nil && ctx.Err() != nil) {
		return int(KindInterrupted)
	}
	return int(KindFailure)
}
