package datastore

import (
	"context"
	"database/sql"
	"log/slog"
	"os"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver (kine links it too)
)

// WAL bounds. Under a steady stream of writes and reads, SQLite's automatic
// PASSIVE checkpoints copy pages back but the WAL file never shrinks, and a
// reader that is always present can keep it from being reused, so it grows
// without bound (the k3s WAL-growth reports). guardWAL checks the WAL every
// walCheckInterval and, past walSoftLimit, runs a TRUNCATE checkpoint, which
// waits (busy_timeout) for a moment without readers and empties the file.
const (
	walCheckInterval = time.Second
	walSoftLimit     = 16 << 20
)

// guardWAL keeps dbPath's WAL under walSoftLimit until ctx ends.
func guardWAL(ctx context.Context, dbPath string, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		log.Warn("WAL guard disabled", "err", err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	t := time.NewTicker(walCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(dbPath + "-wal")
		if err != nil || st.Size() < walSoftLimit {
			continue
		}
		var busy, logPages, done int
		start := time.Now()
		err = db.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
		log.Debug("WAL checkpoint", "walBytes", st.Size(), "busy", busy, "pages", logPages, "checkpointed", done, "took", time.Since(start), "err", err)
	}
}
