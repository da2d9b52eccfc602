// Package datastore runs the Kubernetes datastore for k2's control plane:
// by default kine in-process over a SQLite file, so no etcd is needed;
// optionally an external etcd, Postgres or MySQL, given as an endpoint URL.
package datastore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/k3s-io/kine/pkg/drivers/generic"
	"github.com/k3s-io/kine/pkg/endpoint"
	"github.com/sirupsen/logrus"
)

// DBFile is the SQLite file's name inside <data-dir>/db.
const DBFile = "state.db"

// SQLiteParams tune kine's SQLite for concurrent writers on a WAL database
// without "database is locked": a long busy timeout, immediate write
// transactions (no lock upgrade deadlocks), NORMAL sync (durable on WAL at
// checkpoint, safe against process crashes), and kine's own WAL checkpoint
// after each compaction so the WAL stays bounded.
const SQLiteParams = "_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate"

// Config selects the datastore.
type Config struct {
	// DataDir holds the SQLite file and kine's socket when Endpoint is empty.
	DataDir string
	// Endpoint is empty for SQLite, or etcd://, etcds://, http(s):// (etcd),
	// postgres://, mysql:// exactly as kine takes them.
	Endpoint string
	// Logger receives kine's logs; nil discards them.
	Logger *slog.Logger
}

// Datastore is a running datastore.
type Datastore struct {
	// EtcdServers are the URLs to give the apiserver as --etcd-servers.
	EtcdServers []string
	// DBPath is the SQLite file, or "" for another backend.
	DBPath string

	cancel context.CancelFunc
	wg     *sync.WaitGroup
}

// SQLiteEndpoint returns the kine endpoint for the SQLite file in dataDir.
func SQLiteEndpoint(dataDir string) string {
	return "sqlite://" + filepath.Join(dataDir, "db", DBFile) + "?" + SQLiteParams
}

var logrusOnce sync.Once

// Start starts the datastore and returns once it accepts connections.
// Cancelling ctx does not stop it: call Stop, which waits for kine to close
// the database so the WAL is checkpointed.
func Start(ctx context.Context, cfg Config) (*Datastore, error) {
	ep := cfg.Endpoint
	switch {
	case strings.HasPrefix(ep, "etcd://"):
		return &Datastore{EtcdServers: splitEtcd(ep, "etcd://", "http://"), cancel: func() {}, wg: &sync.WaitGroup{}}, nil
	case strings.HasPrefix(ep, "etcds://"):
		return &Datastore{EtcdServers: splitEtcd(ep, "etcds://", "https://"), cancel: func() {}, wg: &sync.WaitGroup{}}, nil
	case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "https://"):
		return &Datastore{EtcdServers: strings.Split(ep, ","), cancel: func() {}, wg: &sync.WaitGroup{}}, nil
	}
	logrusOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		if cfg.Logger != nil {
			logrus.SetOutput(slogWriter{cfg.Logger.With("component", "kine")})
		}
	})
	d := &Datastore{wg: &sync.WaitGroup{}}
	if ep == "" {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, "db"), 0o700); err != nil {
			return nil, err
		}
		ep = SQLiteEndpoint(cfg.DataDir)
		d.DBPath = filepath.Join(cfg.DataDir, "db", DBFile)
	} else if scheme, _, ok := strings.Cut(ep, "://"); !ok || !validScheme(scheme) {
		// Only the scheme is checked: kine's DSNs are not all URLs
		// (mysql://user:pass@tcp(host:3306)/db is go-sql-driver's form).
		return nil, fmt.Errorf("datastore endpoint %q: want etcd://, postgres://, mysql:// or sqlite://", redact(ep))
	}
	kctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	sock := socketPath(cfg.DataDir)
	etcd, err := endpoint.Listen(kctx, endpoint.Config{
		Listener:            "unix://" + sock,
		Endpoint:            ep,
		WaitGroup:           d.wg,
		CompactInterval:     5 * time.Minute,
		CompactTimeout:      5 * time.Second,
		CompactMinRetain:    1000,
		CompactBatchSize:    1000,
		PollBatchSize:       500,
		PollInterval:        time.Second,
		NotifyInterval:      5 * time.Second,
		EmulatedETCDVersion: "3.6.11",
		ConnectionPoolConfig: generic.ConnectionPoolConfig{
			// Above MaxIdle concurrent queries every burst opens and closes
			// connections (a process each on Postgres): with 20, 50 writers
			// opened ~1,700 connections and ran at a third of the rate they
			// reach with 90 (BenchmarkControlPlanePostgres); SQLite is
			// unaffected. Open connections stay unlimited: a cap below the
			// API server's concurrency stalls kine.
			MaxIdle:     90,
			MaxIdleTime: 2 * time.Minute,
		},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("starting kine on %s: %w", redact(ep), err)
	}
	d.EtcdServers = etcd.Endpoints
	if d.DBPath != "" {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			guardWAL(kctx, d.DBPath, cfg.Logger)
		}()
	}
	return d, nil
}

func validScheme(s string) bool {
	switch s {
	case "etcd", "http", "https", "postgres", "postgresql", "mysql", "sqlite", "nats", "unix":
		return true
	}
	return false
}

// Stop shuts kine down and waits until the database is closed.
func (d *Datastore) Stop() {
	d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// socketPath is kine's unix socket: in the data directory, or, when that
// path would not fit a socket address (108 bytes on Linux), a short path in
// the temp directory named after the data directory. Either way it is 0600.
func socketPath(dataDir string) string {
	p := filepath.Join(dataDir, "kine.sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(os.TempDir(), "k2-kine-"+hex.EncodeToString(sum[:8])+".sock")
}

func splitEtcd(ep, from, to string) []string {
	var out []string
	for _, s := range strings.Split(ep, ",") {
		out = append(out, to+strings.TrimPrefix(s, from))
	}
	return out
}

// redact hides a password in an endpoint URL.
func redact(ep string) string {
	if u, err := url.Parse(ep); err == nil {
		if u.User == nil {
			return ep
		}
		return u.Redacted()
	}
	// Not a URL (mysql://user:pass@tcp(host:3306)/db): hide what lies
	// between the first ':' of the user part and the last '@'.
	scheme, rest, ok := strings.Cut(ep, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return ep
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return ep
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// slogWriter turns logrus text lines into slog records: kine's errors and
// warnings (an unreachable database is retried for minutes) at their level,
// the rest as debug.
type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	msg := line
	if _, m, ok := strings.Cut(line, " msg="); ok {
		if u, err := strconv.Unquote(m); err == nil {
			msg = u // logrus' text line: keep its message
		} else if q, err := strconv.QuotedPrefix(m); err == nil {
			msg, _ = strconv.Unquote(q)
			msg += m[len(q):] // fields after the message
		} else {
			msg = m
		}
	}
	switch {
	case strings.Contains(line, "level=error"), strings.Contains(line, "level=fatal"):
		w.l.Error(msg)
	case strings.Contains(line, "level=warning"):
		w.l.Warn(msg)
	default:
		w.l.Debug(msg)
	}
	return len(p), nil
}
