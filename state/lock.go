package state

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// LockHolder is who holds an environment's lock.
type LockHolder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
	// pidStart is the holder's process start time (Linux /proc), so a pid
	// reused by an unrelated process is not mistaken for the holder.
	pidStart string
}

// Lock is a held environment lock. Release it when the deploy ends.
//
// The lock is a row in the database, so it survives kill -9 of its holder:
// the next Lock on the same host sees that the holder's process is gone
// (its pid is dead, or now belongs to a process started at another time)
// and takes the lock over, logging that it did. A holder on another host
// cannot be checked; its lock must be released with ForceUnlock.
type Lock struct {
	s     *Store
	env   string
	token string
}

// Lock takes env's deploy lock for command (shown to whoever else tries).
// If another live process holds it the error is a *LockedError
// (errors.Is(err, ErrLocked)) naming the holder. The lock is not reentrant:
// a second Lock in the same process fails too.
func (s *Store) Lock(ctx context.Context, env, command string) (*Lock, error) {
	tok := make([]byte, 12)
	if _, err := rand.Read(tok); err != nil {
		return nil, err
	}
	l := &Lock{s: s, env: env, token: hex.EncodeToString(tok)}
	me := LockHolder{PID: s.pid, Host: s.host, Command: command, Since: s.now().UTC(), pidStart: processStart(s.pid)}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		h, err := readHolder(ctx, tx, env)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case h.Host == s.host && !processAlive(h.PID, h.pidStart):
			s.log.Warn("taking over stale lock: its holder is gone", "env", env,
				"pid", h.PID, "host", h.Host, "command", h.Command, "since", h.Since)
			if _, err := tx.ExecContext(ctx, `DELETE FROM locks WHERE env = ?`, env); err != nil {
				return err
			}
		default:
			return &LockedError{Env: env, Holder: *h}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO locks (env, token, pid, pid_start, host, command, since)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, env, l.token, me.PID, me.pidStart, me.Host, me.Command, fmtTime(me.Since))
		return err
	})
	if err != nil {
		var le *LockedError
		if errors.As(err, &le) {
			return nil, le
		}
		return nil, fmt.Errorf("locking environment %q: %w", env, err)
	}
	return l, nil
}

// Release gives the lock up. Releasing a lock that was taken over (because
// this process was thought dead) or already released is a no-op. Release
// uses a context that is not cancelled with ctx so that it still runs after
// Ctrl-C.
func (l *Lock) Release(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := l.s.db.ExecContext(ctx, `DELETE FROM locks WHERE env = ? AND token = ?`, l.env, l.token)
	if err != nil {
		return fmt.Errorf("unlocking environment %q: %w", l.env, err)
	}
	return nil
}

// Env returns the locked environment's name.
func (l *Lock) Env() string { return l.env }

// LockHolderOf returns who holds env's lock, or ErrNotFound if nobody does.
// A stale holder (dead process on this host) is reported too; Stale says so.
func (s *Store) LockHolderOf(ctx context.Context, env string) (h *LockHolder, stale bool, err error) {
	h, err = readHolder(ctx, s.db, env)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, fmt.Errorf("lock of %q: %w", env, ErrNotFound)
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading lock of %q: %w", env, err)
	}
	return h, h.Host == s.host && !processAlive(h.PID, h.pidStart), nil
}

// ForceUnlock removes env's lock whoever holds it. For a holder on another
// host that is known to be gone; k2 cannot check that itself.
func (s *Store) ForceUnlock(ctx context.Context, env string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM locks WHERE env = ?`, env); err != nil {
		return fmt.Errorf("unlocking environment %q: %w", env, err)
	}
	return nil
}

func readHolder(ctx context.Context, q querier, env string) (*LockHolder, error) {
	var h LockHolder
	var since string
	err := q.QueryRowContext(ctx, `SELECT pid, pid_start, host, command, since FROM locks WHERE env = ?`, env).
		Scan(&h.PID, &h.pidStart, &h.Host, &h.Command, &since)
	if err != nil {
		return nil, err
	}
	h.Since = parseTime(since)
	return &h, nil
}
