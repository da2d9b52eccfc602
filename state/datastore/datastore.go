// Package datastore runs the Kubernetes datastore for k2's control plane:
// by default kine in-process over a SQLite file, so no etcd is needed; for
// several servers an etcd member embedded in each (etcd.go); or an external
// etcd, Postgres or MySQL, given as an endpoint URL. It also moves a
// cluster's objects between them (import.go).
package datastore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
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
	// Etcd, when set, runs an embedded etcd member instead (Endpoint must
	// be empty). A SQLite datastore in DataDir is imported into a new
	// cluster, then kept beside as db/state.db.migrated.
	Etcd *EtcdConfig
	// Logger receives kine's and etcd's logs; nil discards them.
	Logger *slog.Logger
}

// Datastore is a running datastore.
type Datastore struct {
	// EtcdServers are the URLs to give the apiserver as --etcd-servers.
	EtcdServers []string
	// DBPath is the SQLite file, or "" for another backend.
	DBPath string
	// Mode is ModeSQLite, ModeEtcd or ModeExternal.
	Mode string
	// EtcdTLS are the client files the apiserver needs for the embedded
	// etcd (--etcd-cafile, --etcd-certfile, --etcd-keyfile); nil otherwise.
	EtcdTLS *TLSFiles

	cancel   context.CancelFunc
	wg       *sync.WaitGroup
	log      *slog.Logger
	etcd     *embed.Etcd
	etcdName string
	client   *clientv3.Client // the embedded member's, in process
	stopEtcd func()
	stopOnce sync.Once
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
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d, err := start(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	if err := d.runImport(ctx, cfg.DataDir); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

func start(ctx context.Context, cfg Config, log *slog.Logger) (*Datastore, error) {
	ep := cfg.Endpoint
	d := &Datastore{wg: &sync.WaitGroup{}, log: log, cancel: func() {}, Mode: ModeExternal}
	if _, _, ok := PendingImport(cfg.DataDir); ok && ep != "" {
		return nil, fmt.Errorf("%s has an import pending (a restored backup), but this server uses the external datastore %s; start it without --datastore-endpoint, or remove %s",
			cfg.DataDir, redact(ep), filepath.Join(cfg.DataDir, "db", ImportFile))
	}
	switch {
	case cfg.Etcd != nil:
		if ep != "" {
			return nil, errors.New("datastore: an embedded etcd and an external endpoint exclude each other")
		}
		if err := prepareEtcd(cfg, log); err != nil {
			return nil, err
		}
		if err := d.runEtcd(ctx, cfg); err != nil {
			return nil, err
		}
		return d, nil
	case HasEtcd(cfg.DataDir) && ep == "":
		return nil, fmt.Errorf("%s holds an embedded etcd member: start the server as that member (k2 server restarts it by itself unless told to use another datastore)", cfg.DataDir)
	case strings.HasPrefix(ep, "etcd://"):
		d.EtcdServers = splitEtcd(ep, "etcd://", "http://")
		return d, nil
	case strings.HasPrefix(ep, "etcds://"):
		d.EtcdServers = splitEtcd(ep, "etcds://", "https://")
		return d, nil
	case strings.HasPrefix(ep, "http://"), strings.HasPrefix(ep, "https://"):
		d.EtcdServers = strings.Split(ep, ",")
		return d, nil
	}
	logrusOnce.Do(func() {
		logrus.SetOutput(io.Discard)
		if cfg.Logger != nil {
			logrus.SetOutput(slogWriter{cfg.Logger.With("component", "kine")})
		}
	})
	if ep == "" {
		if err := os.MkdirAll(filepath.Join(cfg.DataDir, "db"), 0o700); err != nil {
			return nil, err
		}
		ep = SQLiteEndpoint(cfg.DataDir)
		d.DBPath = filepath.Join(cfg.DataDir, "db", DBFile)
		d.Mode = ModeSQLite
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

// prepareEtcd checks what an embedded etcd member starts from and, for a
// new cluster on a SQLite data directory, marks the SQLite datastore for
// import.
func prepareEtcd(cfg Config, log *slog.Logger) error {
	if HasEtcd(cfg.DataDir) {
		return nil // a restart: the member's own data rules
	}
	_, _, pending := PendingImport(cfg.DataDir)
	joining := cfg.Etcd.InitialCluster != ""
	switch {
	case joining && pending:
		return fmt.Errorf("%s has an import pending (a restored backup), but this server joins an existing etcd cluster whose data it takes; restore into the first server instead, or remove %s",
			cfg.DataDir, filepath.Join(cfg.DataDir, "db", ImportFile))
	case joining && HasSQLite(cfg.DataDir):
		return fmt.Errorf("%s holds a SQLite datastore, but this server joins an existing etcd cluster and would leave its objects behind; start it with --cluster-init to move them into a new etcd cluster, or move %s away",
			cfg.DataDir, filepath.Join(cfg.DataDir, "db"))
	case !joining && !pending && HasSQLite(cfg.DataDir):
		log.Info("moving the SQLite datastore into the new embedded etcd cluster", "from", filepath.Join(cfg.DataDir, "db", DBFile))
		return MarkImport(cfg.DataDir, ImportSQLite, DBFile)
	}
	return nil
}

func validScheme(s string) bool {
	switch s {
	case "etcd", "http", "https", "postgres", "postgresql", "mysql", "sqlite", "nats", "unix":
		return true
	}
	return false
}

// Stop shuts kine or etcd down and waits until the database is closed.
func (d *Datastore) Stop() {
	d.stopOnce.Do(d.stop)
}

func (d *Datastore) stop() {
	if d.stopEtcd != nil {
		d.stopEtcd()
	}
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

// Redact hides a password in a datastore endpoint, for logs and reports.
func Redact(ep string) string { return redact(ep) }

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
