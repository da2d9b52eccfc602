package state

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one schema change. Migrations are append-only: never edit one
// that has shipped; add the next. Each runs once, in its own transaction,
// and is recorded in schema_migrations.
type migration struct {
	name string
	sql  string
}

// migrations[i] takes the schema from version i to i+1.
var migrations = []migration{
	{"environments, deployments and machines", `
CREATE TABLE environments (
	name            TEXT PRIMARY KEY,
	uid             TEXT NOT NULL UNIQUE,          -- random; distinguishes a re-created env of the same name
	provider        TEXT NOT NULL,
	provider_config TEXT NOT NULL DEFAULT '{}',    -- JSON given to the provider plugin
	provider_ref    TEXT NOT NULL DEFAULT '',      -- where the config came from (a file path), for people
	vals            TEXT NOT NULL DEFAULT '{}',    -- JSON object of ARG values
	created_at      TEXT NOT NULL,
	updated_at      TEXT NOT NULL
);
CREATE TABLE deployments (
	id              TEXT PRIMARY KEY,
	env             TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE ON UPDATE CASCADE,
	op              TEXT NOT NULL,                 -- deploy, upgrade, destroy
	artifact_ref    TEXT NOT NULL DEFAULT '',
	artifact_digest TEXT NOT NULL DEFAULT '',
	started_at      TEXT NOT NULL,
	finished_at     TEXT,
	result          TEXT NOT NULL,                 -- running, succeeded, failed, interrupted, rolled-back
	error           TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deployments_env ON deployments(env, started_at);
CREATE TABLE machines (
	env         TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE ON UPDATE CASCADE,
	name        TEXT NOT NULL,
	request_id  TEXT NOT NULL UNIQUE,              -- idempotency key given to the provider
	provider_id TEXT NOT NULL DEFAULT '',
	pool        TEXT NOT NULL,
	role        TEXT NOT NULL,
	addresses   TEXT NOT NULL DEFAULT '[]',        -- JSON array
	state       TEXT NOT NULL,
	created_at  TEXT NOT NULL,
	updated_at  TEXT NOT NULL,
	PRIMARY KEY (env, name)
);
`},
	{"step journal", `
CREATE TABLE steps (
	deployment_id TEXT NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
	step          TEXT NOT NULL,
	key           TEXT NOT NULL DEFAULT '',        -- '' for the step itself, else a machine or item
	state         TEXT NOT NULL,                   -- started, done, failed, cleaned
	attempt       INTEGER NOT NULL,
	seq           INTEGER NOT NULL,                -- order of first start within the deployment
	started_at    TEXT NOT NULL,
	finished_at   TEXT,
	output        TEXT NOT NULL DEFAULT 'null',    -- JSON
	error         TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (deployment_id, step, key)
);
`},
	{"secrets and environment locks", `
CREATE TABLE secrets (
	env        TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE ON UPDATE CASCADE,
	name       TEXT NOT NULL,
	sealed     BLOB NOT NULL,                      -- AES-256-GCM: nonce || ciphertext, AAD = env/name
	updated_at TEXT NOT NULL,
	PRIMARY KEY (env, name)
);
CREATE TABLE locks (
	env        TEXT PRIMARY KEY,                   -- no foreign key: env create itself may lock
	token      TEXT NOT NULL,
	pid        INTEGER NOT NULL,
	pid_start  TEXT NOT NULL DEFAULT '',           -- the holder's process start time (guards pid reuse)
	host       TEXT NOT NULL,
	command    TEXT NOT NULL,
	since      TEXT NOT NULL
);
`},
	{"promotion: registries, gates, deployment values and approvals", `
ALTER TABLE environments ADD COLUMN registry TEXT NOT NULL DEFAULT '';  -- repository prefix promotions copy to
ALTER TABLE environments ADD COLUMN policy TEXT NOT NULL DEFAULT '{}';  -- JSON gates for promotions to this env
ALTER TABLE deployments ADD COLUMN vals TEXT NOT NULL DEFAULT '{}';     -- JSON of the ARG values it resolved
ALTER TABLE deployments ADD COLUMN values_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN actor TEXT NOT NULL DEFAULT '';      -- who ran it: user@host or $K2_ACTOR
ALTER TABLE deployments ADD COLUMN source TEXT NOT NULL DEFAULT '';     -- promote: the source env; rollback: the deployment restored
CREATE TABLE approvals (
	env         TEXT NOT NULL REFERENCES environments(name) ON DELETE CASCADE ON UPDATE CASCADE,
	digest      TEXT NOT NULL,                     -- the artifact digest approved for env
	actor       TEXT NOT NULL,
	comment     TEXT NOT NULL DEFAULT '',
	approved_at TEXT NOT NULL,
	PRIMARY KEY (env, digest, actor)
);
`},
}

// SchemaVersion is the newest schema version this binary knows.
func SchemaVersion() int { return len(migrations) }

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_at TEXT NOT NULL
)`

// Version returns the database's schema version (0 for a new file).
func (s *Store) Version(ctx context.Context) (int, error) {
	return schemaVersion(ctx, s.db)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var exists int
	if err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type='table' AND name='schema_migrations'`).Scan(&exists); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	if exists == 0 {
		return 0, nil
	}
	var v int
	if err := q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading schema version: %w", err)
	}
	return v, nil
}

// migrate brings the schema up to version target, one transaction per
// migration. Two processes opening a new database at once are safe: each
// migration re-reads the version inside its IMMEDIATE transaction.
func (s *Store) migrate(ctx context.Context, target int) error {
	// Reading the version takes no write lock: opening an up-to-date
	// database never waits for another process's write.
	v, err := schemaVersion(ctx, s.db)
	if err != nil {
		return err
	}
	if v > len(migrations) {
		return &SchemaError{Path: s.path, Version: v, Known: len(migrations)}
	}
	for v < target {
		err := s.tx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, createMigrations); err != nil {
				return err
			}
			cur, err := schemaVersion(ctx, tx)
			if err != nil {
				return err
			}
			if cur != v {
				return nil // another process applied it; re-read below
			}
			m := migrations[v]
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("applying migration %d (%s): %w", v+1, m.name, err)
			}
			_, err = tx.ExecContext(ctx,
				`INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`, v+1, m.name, s.stamp())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating %s: %w", s.path, err)
		}
		if v, err = schemaVersion(ctx, s.db); err != nil {
			return err
		}
	}
	return nil
}
