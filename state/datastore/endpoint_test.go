package datastore

import (
	"log/slog"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://k2:s3cret@127.0.0.1:5432/k2?sslmode=disable": "postgres://k2:xxxxx@127.0.0.1:5432/k2?sslmode=disable",
		"mysql://root:s3cret@tcp(127.0.0.1:3306)/k2":             "mysql://root:xxxxx@tcp(127.0.0.1:3306)/k2",
		"mysql://root@unix(/run/mysqld/mysqld.sock)/k2":          "mysql://root@unix(/run/mysqld/mysqld.sock)/k2",
		"etcd://127.0.0.1:2379":                                  "etcd://127.0.0.1:2379",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEndpointSchemes(t *testing.T) {
	for _, ok := range []string{"postgres", "postgresql", "mysql", "sqlite", "etcd", "nats"} {
		if !validScheme(ok) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{"", "mongodb", "file"} {
		if validScheme(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
	// A mysql DSN in go-sql-driver's form is not a URL but must get past
	// the check (the datastore then hands it to kine unchanged).
	if _, err := Start(t.Context(), Config{DataDir: t.TempDir(), Endpoint: "mongodb://x"}); err == nil {
		t.Error("mongodb:// accepted")
	}
}

func TestKineLogLevels(t *testing.T) {
	var got []string
	h := slog.New(slog.NewTextHandler(&lineRecorder{&got}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := slogWriter{h}
	w.Write([]byte(`time="2026-11-25T18:12:55Z" level=error msg="Failed to ping database connection: dial tcp 127.0.0.1:1: connect: connection refused"` + "\n"))
	w.Write([]byte(`time="2026-11-25T18:12:55Z" level=warning msg="slow query" duration=2s` + "\n"))
	w.Write([]byte(`time="2026-11-25T18:12:55Z" level=info msg="Configuring database table schema and indexes"` + "\n"))
	want := []string{
		`level=ERROR msg="Failed to ping database connection: dial tcp 127.0.0.1:1: connect: connection refused"`,
		`level=WARN msg="slow query duration=2s"`,
		`level=DEBUG msg="Configuring database table schema and indexes"`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d = %s, want %s", i, got[i], want[i])
		}
	}
}

type lineRecorder struct{ lines *[]string }

func (r *lineRecorder) Write(p []byte) (int, error) {
	*r.lines = append(*r.lines, strings.TrimSpace(string(p)))
	return len(p), nil
}
