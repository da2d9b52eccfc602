package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// pgServer is a throwaway PostgreSQL started by a test: its own cluster in a
// temp directory, trust auth for the superuser "k2", listening on a free
// 127.0.0.1 port and a unix socket in that directory.
type pgServer struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	log  *testutil.SyncBuffer
	done chan struct{}
}

// pgTools finds PostgreSQL's initdb and postgres (on PATH, else Debian's
// versioned directory) and psql, or skips the test.
func pgTools(t testing.TB) (initdb, postgres, psql string) {
	t.Helper()
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
		if len(m) > 0 {
			return m[len(m)-1]
		}
		return ""
	}
	initdb, postgres, psql = find("initdb"), find("postgres"), find("psql")
	if initdb == "" || postgres == "" || psql == "" {
		t.Skipf("PostgreSQL not installed (initdb %q, postgres %q, psql %q); apt-get install postgresql", initdb, postgres, psql)
	}
	return initdb, postgres, psql
}

// pgCredential is who runs initdb and postgres: the current user, or, as
// root (which postgres refuses), the "postgres" system user, else nobody.
func pgCredential(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	t.Skip("running as root and neither a postgres nor a nobody user exists to run PostgreSQL as")
	return nil
}

// startPostgres initialises a cluster and starts postgres with extra
// settings (name=value, as for postgres -c); it returns once the server
// accepts connections and stops it (fast shutdown, then SIGKILL to its whole
// process group) when the test ends.
func startPostgres(t testing.TB, settings ...string) *pgServer {
	t.Helper()
	initdb, postgres, _ := pgTools(t)
	cred := pgCredential(t)
	// Not t.TempDir(): as root the server runs as another user, who cannot
	// enter the testing package's 0700 root-owned parent directory.
	dir, err := os.MkdirTemp("", "k2-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) *exec.Cmd {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
		return cmd
	}
	data := filepath.Join(dir, "data")
	if out, err := run(initdb, "-D", data, "--auth=trust", "-U", "k2", "-E", "UTF8", "--no-locale", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	p := &pgServer{Port: testutil.FreePort(t), Dir: dir, log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	args := []string{"-D", data, "-k", dir, "-p", strconv.Itoa(p.Port), "-c", "listen_addresses=127.0.0.1"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	p.cmd = run(postgres, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	// SIGINT is Postgres' fast shutdown: it ends the backends and removes
	// shared memory.
	superviseDB(t, "postgres", p.cmd, p.log, p.done, syscall.SIGINT, 15*time.Second,
		"database system is ready to accept connections", 30*time.Second)
	return p
}

// superviseDB stops a database server started by a test when the test
// ends (sig, then SIGKILL of its process group after grace) and waits until
// its log shows ready, failing the test if it exits first or takes longer
// than wait.
func superviseDB(t testing.TB, name string, cmd *exec.Cmd, log *testutil.SyncBuffer, done chan struct{}, sig syscall.Signal, grace time.Duration, ready string, wait time.Duration) {
	t.Helper()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(pgid, sig)
		select {
		case <-done:
		case <-time.After(grace):
			t.Logf("%s did not stop within %s of %v; killing its process group", name, grace, sig)
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	})
	deadline := time.After(wait)
	for !strings.Contains(log.String(), ready) {
		select {
		case <-done:
			t.Fatalf("%s exited before ready:\n%s", name, log.String())
		case <-deadline:
			t.Fatalf("%s not ready after %s:\n%s", name, wait, log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Endpoint is the --datastore-endpoint for database db on this server.
func (p *pgServer) Endpoint(db string) string {
	return fmt.Sprintf("postgres://k2@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// psql runs one query in database db with psql over TCP and returns the
// unaligned, tuples-only result.
func (p *pgServer) psql(t testing.TB, db, query string) string {
	t.Helper()
	_, _, psql := pgTools(t)
	return runDBClient(t, psql, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port), "-U", "k2", "-d", db,
		"-X", "-v", "ON_ERROR_STOP=1", "-Atc", query)
}

// pgCount runs a count query and returns the number.
func (p *pgServer) pgCount(t testing.TB, db, query string) int {
	t.Helper()
	return parseCount(t, query, p.psql(t, db, query))
}

// TestServerOnPostgres runs `k2 server --datastore-endpoint postgres://…`
// against a real PostgreSQL: kine creates the database and its table, the
// real kubectl lists namespaces and applies a workload whose Deployment gets
// a ReplicaSet and Pods from the in-process controllers, the objects are rows
// in Postgres (and no SQLite file is made), k2 backup refuses (Postgres is
// backed up with its own tools), and a clean restart on the same data
// directory and endpoint finds the objects again.
func TestServerOnPostgres(t *testing.T) {
	pg := startPostgres(t)
	const db = "k2_e2e" // does not exist yet: kine creates it
	if n := pg.pgCount(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname = '"+db+"'"); n != 0 {
		t.Fatalf("database %s exists before the server started", db)
	}
	checkServerOnSQL(t, "Postgres", pg.Endpoint(db), func(query string) int { return pg.pgCount(t, db, query) })
}

// checkServerOnSQL is the body of the tests of `k2 server` on an external
// SQL database through kine: endpoint is the --datastore-endpoint and count
// runs a count query in the database kine uses.
func checkServerOnSQL(t *testing.T, dbName, endpoint string, count func(query string) int) {
	t.Helper()
	dir := t.TempDir()
	start := time.Now()
	s := startServer(t, dir, "--datastore-endpoint", endpoint)
	t.Logf("k2 server on %s ready in %s (fresh data dir, fresh database)", dbName, time.Since(start).Round(time.Millisecond))

	ns := s.mustKubectl("get", "ns", "-o", "name")
	for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"} {
		if !strings.Contains(ns, want) {
			t.Errorf("kubectl get ns lacks %s:\n%s", want, ns)
		}
	}
	s.applyWorkload(t, 60*time.Second)

	// The objects are rows of kine's table in the external database.
	rows := count("SELECT count(*) FROM kine")
	for _, key := range []string{
		"/registry/configmaps/default/web",
		"/registry/deployments/default/web",
		"/registry/services/specs/default/web",
		"/registry/namespaces/kube-system",
	} {
		if n := count("SELECT count(*) FROM kine WHERE name = '" + key + "' AND deleted = 0"); n == 0 {
			t.Errorf("no row for %s in %s table kine", key, dbName)
		}
	}
	if n := count("SELECT count(*) FROM kine WHERE name LIKE '/registry/replicasets/default/web-%'"); n == 0 {
		t.Errorf("no ReplicaSet row in %s: the controller's writes did not land there", dbName)
	}
	if n := count("SELECT count(*) FROM kine WHERE name LIKE '/registry/pods/default/web-%'"); n < 2 {
		t.Errorf("%d Pod rows in %s, want ≥ 2", n, dbName)
	}
	t.Logf("%s table kine: %d rows after the workload", dbName, rows)
	if _, err := os.Stat(filepath.Join(dir, "db", "state.db")); err == nil {
		t.Errorf("a SQLite datastore was created at %s although the endpoint is %s", filepath.Join(dir, "db", "state.db"), dbName)
	}

	// k2 backup copies the SQLite datastore only; on an external database it
	// says so instead of writing a backup without the objects.
	backup := filepath.Join(t.TempDir(), "backup.tar.gz")
	if r := k2(t, t.TempDir(), "backup", "--data-dir", dir, "-o", backup); r.Code == 0 || !strings.Contains(r.Stderr, "own tools") {
		t.Errorf("k2 backup of a server on %s: exit %d, want a refusal naming the database's own tools; stderr:\n%s", dbName, r.Code, r.Stderr)
	}

	s.Stop()
	start = time.Now()
	s2 := startServer(t, dir, "--datastore-endpoint", endpoint)
	t.Logf("restart on the same data dir and database ready in %s", time.Since(start).Round(time.Millisecond))
	if got := s2.mustKubectl("get", "configmap", "web", "-o", "jsonpath={.data.greeting}"); got != "hello" {
		t.Errorf("after restart, ConfigMap web greeting = %q, want hello", got)
	}
	if out := s2.mustKubectl("get", "deploy,svc", "-o", "name"); !strings.Contains(out, "deployment.apps/web") || !strings.Contains(out, "service/web") {
		t.Errorf("after restart, the Deployment or Service is missing:\n%s", out)
	}
	if after := count("SELECT count(*) FROM kine"); after < rows {
		t.Errorf("kine rows went from %d to %d across the restart", rows, after)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); err == nil {
		t.Errorf("restart on %s created %s", dbName, filepath.Join(dir, "db"))
	}
	s2.Stop()
}

// BenchmarkControlPlanePostgres measures `k2 server` on a local PostgreSQL:
// time to ready on a fresh database and ConfigMap creates/s from 1 and 50
// client-go clients, and the same 50-client load on the default SQLite
// datastore as a ratio (K2_BENCH_CLIENTS changes the 50). Postgres runs
// with its default settings (fsync and synchronous_commit on, so every
// commit waits for a WAL flush, where k2's SQLite syncs at checkpoints;
// max_connections 100); K2_BENCH_PG_SETTINGS adds comma-separated settings,
// e.g. synchronous_commit=off.
func BenchmarkControlPlanePostgres(b *testing.B) {
	var settings []string
	if v := os.Getenv("K2_BENCH_PG_SETTINGS"); v != "" {
		settings = strings.Split(v, ",")
	}
	for range b.N {
		pg := startPostgres(b, settings...)
		name := "Postgres"
		if len(settings) > 0 {
			name += " (" + strings.Join(settings, ", ") + ")"
		}
		benchOnSQL(b, name, pg.Endpoint("kubernetes"), func() int { return pg.pgCount(b, "kubernetes", "SELECT count(*) FROM kine") })
		// Each session is a forked backend: kine's pool keeps 20 idle
		// connections, so more concurrent queries than that open and close
		// connections under load.
		time.Sleep(time.Second) // backends report their stats as they exit
		sessions := pg.pgCount(b, "postgres", "SELECT sessions FROM pg_stat_database WHERE datname = 'kubernetes'")
		b.ReportMetric(float64(sessions), "pg_sessions")
		fmt.Printf("Postgres sessions opened by the k2 server on database kubernetes: %d\n", sessions)
	}
}

// benchClients is the number of concurrent clients of the write benchmarks:
// 50, or K2_BENCH_CLIENTS.
func benchClients(b *testing.B) int {
	b.Helper()
	clients := 50
	if v := os.Getenv("K2_BENCH_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("K2_BENCH_CLIENTS=%q: want a positive number", v)
		}
		clients = n
	}
	return clients
}

// benchOnSQL runs one round of the external-database benchmark against
// endpoint; rows counts kine's rows there.
func benchOnSQL(b *testing.B, name, endpoint string, rows func() int) {
	clients := benchClients(b)
	dir := b.TempDir()
	start := time.Now()
	s := startServer(b, dir, "--datastore-endpoint", endpoint)
	ready := time.Since(start)
	cs := s.Client()
	one := createLoad(cs, 1, 5*time.Second, "one")
	fifty := createLoad(cs, clients, 10*time.Second, "fifty")
	n := rows()
	cpLog, _ := os.ReadFile(filepath.Join(dir, "logs", "control-plane.log"))
	tooMany := strings.Count(string(cpLog), "too many clients") + strings.Count(string(cpLog), "Too many connections")
	s.Stop()

	sq := startServer(b, b.TempDir())
	sqFifty := createLoad(sq.Client(), clients, 10*time.Second, "fifty")
	sq.Stop()

	b.ReportMetric(ready.Seconds(), "ready_s")
	b.ReportMetric(one.rate, "creates/s_1client")
	b.ReportMetric(fifty.rate, "creates/s_50clients")
	b.ReportMetric(float64(fifty.p95.Milliseconds()), "p95_ms_50clients")
	b.ReportMetric(float64(fifty.errors), "errors_50clients")
	b.ReportMetric(fifty.rate/sqFifty.rate, "db/sqlite_50clients")
	b.ReportMetric(float64(tooMany), "too_many_connections")
	fmt.Printf("k2 server on %s: ready %.2fs, 1 client %.0f/s (p50 %s), %d clients %.0f/s (p95 %s, %d errors), %d kine rows, %d too-many-connections errors in the control-plane log; same %d-client load on SQLite %.0f/s (p95 %s, %d errors); %s/SQLite = %.2f\n",
		name, ready.Seconds(), one.rate, one.p50, clients, fifty.rate, fifty.p95, fifty.errors, n, tooMany, clients, sqFifty.rate, sqFifty.p95, sqFifty.errors, name, fifty.rate/sqFifty.rate)
}
