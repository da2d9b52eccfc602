package sdk

import (
	"fmt"
	"strings"
)

// Severities of a Diagnostic.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Diagnostic is a problem the user can fix, pointing at what to change.
type Diagnostic struct {
	Severity string `json:"severity"`
	Summary  string `json:"summary"`
	Detail   string `json:"detail,omitempty"`
	// Path locates the problem: "config.stateDir", "machines[2].arch",
	// "bootstrap.method".
	Path string `json:"path,omitempty"`
}

func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Path != "" {
		b.WriteString(d.Path + ": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(" (" + d.Detail + ")")
	}
	return b.String()
}

// Diagnostics is a list of problems.
type Diagnostics []Diagnostic

// Errorf appends an error diagnostic at path.
func (ds *Diagnostics) Errorf(path, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Severity: SeverityError, Path: path, Summary: fmt.Sprintf(format, args...)})
}

// Warnf appends a warning diagnostic at path.
func (ds *Diagnostics) Warnf(path, format string, args ...any) {
	*ds = append(*ds, Diagnostic{Severity: SeverityWarning, Path: path, Summary: fmt.Sprintf(format, args...)})
}

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity != SeverityWarning {
			return true
		}
	}
	return false
}

// Err returns the error diagnostics as one error, or nil.
func (ds Diagnostics) Err() error {
	var msgs []string
	for _, d := range ds {
		if d.Severity != SeverityWarning {
			msgs = append(msgs, d.String())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return &DiagnosticsError{Diagnostics: ds}
}

// DiagnosticsError is the error form of error diagnostics, for callers that
// branch on user-fixable problems with errors.As.
type DiagnosticsError struct {
	Diagnostics Diagnostics
}

func (e *DiagnosticsError) Error() string {
	var msgs []string
	for _, d := range e.Diagnostics {
		if d.Severity != SeverityWarning {
			msgs = append(msgs, d.String())
		}
	}
	return strings.Join(msgs, "; ")
}

func sprintf(format string, args ...any) string {
	if len(args) == 0 {
		return format
	}
	return fmt.Sprintf(format, args...)
}
