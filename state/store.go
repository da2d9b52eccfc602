// Package state is k2's own record of the world, in a SQLite database at
// $K2_HOME/state.db: environments, deployments with their step journal,
// machines, history, the per-environment deploy lock, and cluster secrets
// (kubeconfig, join token) encrypted at rest with the key in
// $K2_HOME/state.key.
//
// The database is opened in WAL mode with a busy timeout and foreign keys on,
// so several k2 processes may read and write it at once; every write is a
// short IMMEDIATE transaction. The schema is versioned (see migrate.go).
//
// state refers to other domains only by id and digest; it imports nothing
// from k2 but internal packages.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// File names inside $K2_HOME.
const (
	DBFile  = "state.db"
	KeyFile = "state.key"
)

// busyTimeout is how long a statement waits for another process's write
// transaction before failing with "database is locked".
const busyTimeout = 10 * time.Second

// Store is an open state database. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	path string
	key  []byte
	log  *slog.Logger
	now  func() time.Time
	host string
	pid  int
}

// Option configures Open.
type Option func(*Store)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// WithClock sets the clock used for timestamps; the default is time.Now.
// Tests use it for stable output.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// Open opens (creating if needed) the state database in home ($K2_HOME) and
// migrates it to the newest schema. home is created 0700, state.db and
// state.key 0600. A database migrated by a newer k2 is refused with a
// *SchemaError. Opening is cheap: one file open and a version check.
func Open(ctx context.Context, home string, opts ...Option) (*Store, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("creating k2 home: %w", err)
	}
	key, err := loadOrCreateKey(filepath.Join(home, KeyFile))
	if err != nil {
		return nil, err
	}
	s, err := openDB(ctx, filepath.Join(home, DBFile), opts...)
	if err != nil {
		return nil, err
	}
	s.key = key
	if err := s.migrate(ctx, len(migrations)); err != nil {
		s.db.Close()
		return nil, err
	}
	return s, nil
}

// openDB opens path without migrating it.
func openDB(ctx context.Context, path string, opts ...Option) (*Store, error) {
	// Create the file ourselves so it is 0600 from the start; SQLite gives
	// the -wal and -shm files the database file's permissions.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening state database: %w", err)
	}
	f.Close()

	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	q.Set("_foreign_keys", "1")
	q.Set("_synchronous", "NORMAL") // safe with WAL: a power cut may lose the last commits, never corrupts
	q.Set("_txlock", "immediate")   // writers queue at BEGIN instead of deadlocking on upgrade
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	// A few connections: readers run in parallel under WAL, writers are
	// serialised by SQLite itself. Connections are cheap to keep.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening state database %s: %w", path, err)
	}
	host, _ := os.Hostname()
	s := &Store{
		db:   db,
		path: path,
		log:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		now:  time.Now,
		host: host,
		pid:  os.Getpid(),
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// tx runs fn in an IMMEDIATE transaction and commits it if fn returns nil.
func (s *Store) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, ignoreDone(tx.Rollback()))
	}
	return tx.Commit()
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}

// Timestamps are stored as fixed-width UTC text, so they sort as strings and
// read well in the sqlite3 shell.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

func (s *Store) stamp() string { return s.now().UTC().Format(timeLayout) }

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func parseTime(v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(timeLayout, v)
	if err != nil {
		return time.Time{}
	}
	return t
}

// nullTime reads a nullable time column.
func nullTime(v sql.NullString) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return parseTime(v.String)
}

func nullStr(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return fmtTime(t)
}
