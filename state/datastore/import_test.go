package datastore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// writeObjects creates n keys through c, updates every third and deletes
// every fifth, and returns what must be left: key → value.
func writeObjects(t *testing.T, ctx context.Context, c *clientv3.Client, n int) map[string]string {
	t.Helper()
	want := map[string]string{}
	for i := range n {
		k := fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)
		if err := put(ctx, c, k, kv{value: []byte("v1")}, 0); err != nil {
			t.Fatal(err)
		}
		want[k] = "v1"
	}
	for i := 0; i < n; i += 3 {
		k := fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)
		if err := put(ctx, c, k, kv{value: []byte("v2")}, 0); err != nil {
			t.Fatal(err)
		}
		want[k] = "v2"
	}
	for i := 0; i < n; i += 5 {
		k := fmt.Sprintf("/registry/configmaps/default/cm-%03d", i)
		g, err := c.Get(ctx, k)
		if err != nil || len(g.Kvs) != 1 {
			t.Fatalf("get %s: %v", k, err)
		}
		r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", g.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k)).Commit()
		if err != nil || !r.Succeeded {
			t.Fatalf("delete %s: %v", k, err)
		}
		delete(want, k)
	}
	// An event with a lease, as the apiserver writes them.
	l, err := c.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(ctx, c, "/registry/events/default/e1", kv{value: []byte("ev"), leased: true}, l.ID); err != nil {
		t.Fatal(err)
	}
	want["/registry/events/default/e1"] = "ev"
	return want
}

func readAll(t *testing.T, ctx context.Context, c *clientv3.Client) map[string]string {
	t.Helper()
	g, err := c.Get(ctx, "/registry/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range g.Kvs {
		if string(kv.Key) == healthKey {
			continue // kine writes its own
		}
		got[string(kv.Key)] = string(kv.Value)
	}
	return got
}

// TestSQLiteToEtcdToSQLite moves a SQLite datastore's objects into a new
// embedded etcd (as k2 server --cluster-init does), takes an etcd snapshot,
// and imports the snapshot into a fresh SQLite datastore (as k2 restore of
// an etcd backup does): every live key with its latest value arrives, the
// deleted ones do not, the SQLite file stays beside as state.db.migrated.
func TestSQLiteToEtcdToSQLite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	ds, err := Start(ctx, Config{DataDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientv3.New(clientv3.Config{Endpoints: ds.EtcdServers, DialTimeout: 5 * time.Second, Logger: zapNop()})
	if err != nil {
		t.Fatal(err)
	}
	want := writeObjects(t, ctx, kc, 60)
	kc.Close()
	ds.Stop()

	m := newMember(t, "s0", testPKI(t))
	m.dir = dir
	m.start(t, ctx)
	if _, _, pending := PendingImport(dir); pending {
		t.Error("import still pending after start")
	}
	if !HasEtcd(dir) || HasSQLite(dir) {
		t.Errorf("after migration: etcd %v, sqlite %v", HasEtcd(dir), HasSQLite(dir))
	}
	if _, err := os.Stat(filepath.Join(dir, "db", DBFile+".migrated")); err != nil {
		t.Errorf("the SQLite file is not kept beside: %v", err)
	}
	ec := m.dial(t)
	if diff := cmp.Diff(want, readAll(t, ctx, ec)); diff != "" {
		t.Fatalf("etcd after migration (-want +got):\n%s", diff)
	}
	g, _ := ec.Get(ctx, "/registry/events/default/e1")
	if len(g.Kvs) != 1 || g.Kvs[0].Lease == 0 {
		t.Errorf("imported event has no lease: %v", g.Kvs)
	}

	// Snapshot the etcd and import it into a new SQLite datastore.
	snap, err := ec.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir2 := t.TempDir()
	dst := filepath.Join(dir2, "db", SnapshotImportPath)
	os.MkdirAll(filepath.Dir(dst), 0o700)
	f, _ := os.Create(dst)
	if _, err := io.Copy(f, snap); err != nil {
		t.Fatal(err)
	}
	f.Close()
	snap.Close()
	if err := MarkImport(dir2, ImportSnapshot, SnapshotImportPath); err != nil {
		t.Fatal(err)
	}
	ds2, err := Start(ctx, Config{DataDir: dir2, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer ds2.Stop()
	if ds2.Mode != ModeSQLite {
		t.Errorf("mode %s", ds2.Mode)
	}
	kc2, err := clientv3.New(clientv3.Config{Endpoints: ds2.EtcdServers, DialTimeout: 5 * time.Second, Logger: zapNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer kc2.Close()
	if diff := cmp.Diff(want, readAll(t, ctx, kc2)); diff != "" {
		t.Fatalf("SQLite after importing the snapshot (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(dst); err == nil {
		t.Error("the imported snapshot was left behind")
	}
}

// TestSnapshotDamaged: a snapshot whose SHA-256 trailer does not match is
// refused, not half imported.
func TestSnapshotDamaged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snap.db")
	b := make([]byte, 4096+32)
	b[100] = 1
	os.WriteFile(p, b, 0o600)
	if _, err := ReadSnapshot(p); err == nil {
		t.Fatal("damaged snapshot accepted")
	}
}

// TestJoinRefusesLocalData: a server that joins an etcd cluster must not
// silently drop a SQLite datastore of its own, nor a restored backup.
func TestJoinRefusesLocalData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ds, err := Start(ctx, Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ds.Stop()
	cfg := EtcdConfig{Name: "s1", ClientURL: "https://127.0.0.1:1", PeerURL: "https://127.0.0.1:2", InitialCluster: "s0=https://127.0.0.1:3,s1=https://127.0.0.1:2"}
	if _, err := Start(ctx, Config{DataDir: dir, Etcd: &cfg}); err == nil {
		t.Fatal("joined with a SQLite datastore in the data directory")
	}
	dir2 := t.TempDir()
	MarkImport(dir2, ImportSnapshot, SnapshotImportPath)
	if _, err := Start(ctx, Config{DataDir: dir2, Etcd: &cfg}); err == nil {
		t.Fatal("joined with a restored backup pending")
	}
}
