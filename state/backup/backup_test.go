package backup_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"k2.dev/k2/internal/dirlock"
	"k2.dev/k2/state/backup"
	"k2.dev/k2/state/datastore"
)

func port(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestEtcdBackupRestore backs up an embedded etcd datastore twice — from
// the running member (an etcd snapshot over its client port) and from its
// database file with the server stopped — restores each into an empty data
// directory and starts a SQLite datastore there: the restored server
// imports the snapshot and has every key.
func TestEtcdBackupRestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pki"), 0o700)
	os.WriteFile(filepath.Join(dir, "pki", "ca.crt"), []byte("test"), 0o644)
	cfg := &datastore.EtcdConfig{Name: "s0", ClientURL: "http://127.0.0.1:" + port(t), PeerURL: "http://127.0.0.1:" + port(t)}
	ds, err := datastore.Start(ctx, datastore.Config{DataDir: dir, Etcd: cfg})
	if err != nil {
		t.Fatal(err)
	}
	c := ds.EtcdClient()
	for i := range 50 {
		if _, err := c.Put(ctx, fmt.Sprintf("/registry/secrets/default/s%d", i), "x"); err != nil {
			t.Fatal(err)
		}
	}
	lock, err := dirlock.Acquire(dir, "server.lock") // as k2 server holds it
	if err != nil {
		t.Fatal(err)
	}
	var running bytes.Buffer
	m, err := backup.Backup(ctx, dir, &running, backup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Datastore != datastore.ModeEtcd {
		t.Errorf("manifest datastore %q", m.Datastore)
	}
	ds.Stop()
	lock.Release()
	var stopped bytes.Buffer
	if _, err := backup.Backup(ctx, dir, &stopped, backup.Options{}); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"running": running.Bytes(), "stopped": stopped.Bytes()} {
		t.Run(name, func(t *testing.T) {
			dst := t.TempDir()
			if _, err := backup.Restore(ctx, bytes.NewReader(b), dst, false); err != nil {
				t.Fatal(err)
			}
			if _, err := backup.Restore(ctx, bytes.NewReader(b), dst, false); err == nil {
				t.Error("a second restore into the same directory was accepted without --force")
			}
			rs, err := datastore.Start(ctx, datastore.Config{DataDir: dst})
			if err != nil {
				t.Fatal(err)
			}
			defer rs.Stop()
			kc, err := clientv3.New(clientv3.Config{Endpoints: rs.EtcdServers, DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			g, err := kc.Get(ctx, "/registry/secrets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil || g.Count != 50 {
				t.Fatalf("restored keys: %d (%v), want 50", g.Count, err)
			}
		})
	}
}
