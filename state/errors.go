package state

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels callers branch on with errors.Is. Errors returned by the store wrap
// them with the record they are about: `environment "prod": not found`.
var (
	// ErrNotFound: the environment, deployment, machine or secret does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: creating a record whose key is already taken.
	ErrExists = errors.New("already exists")
	// ErrLocked: another process holds the environment's lock; the error is
	// a *LockedError naming the holder.
	ErrLocked = errors.New("locked")
	// ErrWrongKey: a secret cannot be decrypted with $K2_HOME/state.key
	// (another key, or the ciphertext was altered).
	ErrWrongKey = errors.New("cannot decrypt: state.key does not match this state.db")
	// ErrSchemaTooNew: the database was migrated by a newer k2; the error is
	// a *SchemaError.
	ErrSchemaTooNew = errors.New("state database is newer than this k2")
	// ErrInvalid: a record that the store refuses to write (empty name, bad value).
	ErrInvalid = errors.New("invalid")
)

// LockedError reports that an environment is locked by another deploy.
type LockedError struct {
	Env    string
	Holder LockHolder
}

func (e *LockedError) Error() string {
	h := e.Holder
	return fmt.Sprintf("environment %q is locked by pid %d on %s (%q) since %s",
		e.Env, h.PID, h.Host, h.Command, h.Since.UTC().Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// SchemaError reports a database whose schema version this k2 does not know.
type SchemaError struct {
	Path    string
	Version int // the database's version
	Known   int // the newest version this binary knows
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("%s has schema version %d but this k2 knows only up to %d; upgrade k2 (it never downgrades a database)",
		e.Path, e.Version, e.Known)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchemaTooNew }
