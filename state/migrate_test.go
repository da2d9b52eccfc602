package state

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// schemaOf returns the schema as SQLite prints it, for comparing a migrated
// database with a fresh one.
func schemaOf(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master
		WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestMigrateFromEveryVersion opens a database at each older schema version,
// with data in it, and checks that Open migrates it to the same schema as a
// new database without losing the data.
func TestMigrateFromEveryVersion(t *testing.T) {
	ctx := context.Background()
	fresh, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := schemaOf(t, fresh.db)
	fresh.Close()

	for from := 0; from < len(migrations); from++ {
		t.Run(strings.ReplaceAll(migrationName(from), " ", "_"), func(t *testing.T) {
			home := t.TempDir()
			old, err := openDB(ctx, filepath.Join(home, DBFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := old.migrate(ctx, from); err != nil {
				t.Fatal(err)
			}
			if v, _ := old.Version(ctx); v != from {
				t.Fatalf("version = %d, want %d", v, from)
			}
			if from >= 1 { // environments exist from version 1 on
				if _, err := old.db.Exec(`INSERT INTO environments (name, uid, provider, vals, created_at, updated_at)
					VALUES ('prod', 'u1', 'local', '{"replicas":"3"}', '2026-01-01T00:00:00.000000000Z', '2026-01-01T00:00:00.000000000Z')`); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()

			s, err := Open(ctx, home)
			if err != nil {
				t.Fatalf("migrating from version %d: %v", from, err)
			}
			defer s.Close()
			if v, _ := s.Version(ctx); v != len(migrations) {
				t.Errorf("version after migrating = %d, want %d", v, len(migrations))
			}
			if diff := cmp.Diff(want, schemaOf(t, s.db)); diff != "" {
				t.Errorf("schema differs from a new database (-want +got):\n%s", diff)
			}
			if from >= 1 {
				e, err := s.GetEnv(ctx, "prod")
				if err != nil {
					t.Fatal(err)
				}
				if e.Values["replicas"] != "3" {
					t.Errorf("values after migration = %v", e.Values)
				}
			}
			var n int
			s.db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n)
			if n != len(migrations) {
				t.Errorf("schema_migrations has %d rows, want %d (each migration once)", n, len(migrations))
			}
		})
	}
}

func migrationName(from int) string {
	if from == 0 {
		return "from empty"
	}
	return "from " + migrations[from-1].name
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	s, err := Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO schema_migrations VALUES (?, 'from the future', '')`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(ctx, home)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	var se *SchemaError
	if !errors.As(err, &se) || se.Version != len(migrations)+1 || se.Known != len(migrations) {
		t.Errorf("error = %#v", err)
	}
	if !strings.Contains(err.Error(), "upgrade k2") {
		t.Errorf("message %q does not say what to do", err)
	}
}

// TestConcurrentOpenMigratesOnce opens one new database from several
// goroutines (separate *sql.DB) at once: each migration applies exactly once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	errs := make(chan error, 6)
	stores := make(chan *Store, 6)
	for range 6 {
		go func() {
			s, err := Open(ctx, home)
			errs <- err
			stores <- s
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		if s := <-stores; s != nil {
			defer s.Close()
		}
	}
	s, err := Open(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	s.db.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n)
	if n != len(migrations) {
		t.Errorf("schema_migrations has %d rows, want %d", n, len(migrations))
	}
}
