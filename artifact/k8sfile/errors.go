package k8sfile

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Sentinels. Every *Error matches ErrInvalid with errors.Is, so a caller can
// map any parse failure to "invalid K8sfile" (exit code 3) without walking the
// joined error.
var (
	// ErrInvalid marks a K8sfile that does not parse or validate.
	ErrInvalid = errors.New("invalid K8sfile")
	// ErrUndefined is returned by [Expand] for a ${name} absent from the values.
	ErrUndefined = errors.New("undefined variable")
	// ErrTemplate is returned by [Expand] for a malformed ${…} reference.
	ErrTemplate = errors.New("malformed template")
	// ErrUnknownArg is returned by [File.ArgValues] and [File.Resolve] for
	// a value given for a name the K8sfile does not declare with ARG.
	ErrUnknownArg = errors.New("unknown ARG")
)

// MaxErrors caps how many problems [Parse] reports; the rest are summarised
// as "… and N more".
const MaxErrors = 20

// Error is one problem in a K8sfile, at the position of the offending token.
// It renders as
//
//	K8sfile:12:5: ADD: chart "redis" not found; run k2 repo add …
//
// with the file name as given to [Parse], the 1-based line and column, the
// instruction (omitted when the problem is not inside one), the message and,
// after "; ", a hint saying what to do (omitted when empty). The message and
// hint are written for users.
type Error struct {
	Pos         Pos
	Instruction string // upper-case keyword: "ADD"; empty outside an instruction
	Msg         string
	Hint        string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: ", e.Pos.File, e.Pos.Line, e.Pos.Col)
	if e.Instruction != "" {
		b.WriteString(e.Instruction)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Is reports whether target is [ErrInvalid].
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// joinErrors sorts errs by position and joins at most [MaxErrors] of them.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	n := min(len(errs), MaxErrors)
	out := make([]error, 0, n+1)
	for _, e := range errs[:n] {
		out = append(out, e)
	}
	if rest := len(errs) - n; rest > 0 {
		out = append(out, fmt.Errorf("… and %d more", rest))
	}
	return errors.Join(out...)
}

// Errors returns the *Error values joined in err, in order; nil if none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok { //nolint:errorlint // walks the joined tree itself
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}
