package state_test

import (
	"database/sql"
	"path/filepath"
	"testing"

	"k2.dev/k2/state"
)

func rawDB(t *testing.T, home string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(home, state.DBFile)+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	return db
}
