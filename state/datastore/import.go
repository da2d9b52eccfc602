package datastore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"k2.dev/k2/internal/atomicfile"
)

// Importing moves a cluster's objects from one datastore into another: a
// SQLite datastore into a new embedded etcd (k2 server --cluster-init on a
// SQLite server), or an etcd snapshot from a backup into whatever datastore
// a restored server starts (k2 restore). It copies the latest value of every
// key under /registry/ — what the apiserver stores — through the etcd API,
// after the datastore starts and before the apiserver does. Resource
// versions start afresh; clients watching from an old one relist, as after
// any restore.
//
// <data-dir>/db/import.json marks an import as pending: written before the
// datastore starts, removed once every key is in. A server killed in
// between imports again on its next start (a create that finds the key
// already there with the same value is a no-op), so the move is never
// half done.

// Import sources.
const (
	ImportSQLite   = "sqlite"        // a kine SQLite database
	ImportSnapshot = "etcd-snapshot" // an etcd snapshot (a bbolt file)
)

// ImportFile is the pending-import marker in <data-dir>/db.
const ImportFile = "import.json"

// SnapshotImportPath is where k2 restore leaves an etcd snapshot to import.
const SnapshotImportPath = "import/etcd-snapshot.db"

// healthKey is kine's own health check key, not the cluster's.
const healthKey = "/registry/health"

// eventLeaseTTL is the lease given to imported keys that had one (Events):
// the remaining time is not kept by either source.
const eventLeaseTTL = time.Hour

type importMarker struct {
	Kind   string `json:"kind"`
	Source string `json:"source"` // relative to <data-dir>/db
}

// MarkImport records that the datastore started next on dataDir must
// import source (relative to <data-dir>/db) of kind.
func MarkImport(dataDir, kind, source string) error {
	b, _ := json.Marshal(importMarker{Kind: kind, Source: source})
	if err := os.MkdirAll(filepath.Join(dataDir, "db"), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dataDir, "db", ImportFile), b, 0o600)
}

// PendingImport returns the pending import of dataDir, if any.
func PendingImport(dataDir string) (kind, source string, ok bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "db", ImportFile))
	if err != nil {
		return "", "", false
	}
	var m importMarker
	if json.Unmarshal(b, &m) != nil {
		return "", "", false
	}
	return m.Kind, m.Source, true
}

// runImport imports the pending import of cfg.DataDir into d, if any.
func (d *Datastore) runImport(ctx context.Context, dataDir string) error {
	kind, source, ok := PendingImport(dataDir)
	if !ok {
		return nil
	}
	path := filepath.Join(dataDir, "db", source)
	c := d.client
	if c == nil {
		var err error
		c, err = clientv3.New(clientv3.Config{Endpoints: d.EtcdServers, DialTimeout: 5 * time.Second, Logger: zapNop()})
		if err != nil {
			return err
		}
		defer c.Close()
	}
	t := time.Now()
	var kvs map[string]kv
	var err error
	switch kind {
	case ImportSQLite:
		kvs, err = readSQLite(ctx, path)
	case ImportSnapshot:
		kvs, err = ReadSnapshot(path)
	default:
		return fmt.Errorf("%s: unknown import kind %q", ImportFile, kind)
	}
	if err != nil {
		return fmt.Errorf("reading %s to import: %w", path, err)
	}
	n, err := importKVs(ctx, c, kvs, d.log)
	if err != nil {
		return fmt.Errorf("importing %s into the %s datastore: %w", path, d.Mode, err)
	}
	d.log.Info("imported the cluster's objects", "from", path, "kind", kind, "keys", n, "into", d.Mode, "took", time.Since(t).Round(time.Millisecond))
	switch kind {
	case ImportSQLite:
		// Kept beside, not deleted: the SQLite file is the way back.
		for _, suffix := range []string{"-wal", "-shm", ""} {
			if err := os.Rename(path+suffix, path+".migrated"+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	default:
		os.Remove(path)
	}
	return os.Remove(filepath.Join(dataDir, "db", ImportFile))
}

// kv is one key's latest value.
type kv struct {
	value  []byte
	leased bool
}

// readSQLite reads the latest value of every live /registry/ key of a kine
// SQLite database.
func readSQLite(ctx context.Context, path string) (map[string]kv, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT kv.name, kv.value, kv.lease FROM kine kv
		JOIN (SELECT MAX(id) AS id FROM kine GROUP BY name) latest ON latest.id = kv.id
		WHERE kv.deleted = 0 AND kv.name LIKE '/registry/%' AND kv.name != '`+healthKey+`'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]kv{}
	for rows.Next() {
		var name string
		var value []byte
		var lease int64
		if err := rows.Scan(&name, &value, &lease); err != nil {
			return nil, err
		}
		out[name] = kv{value: value, leased: lease > 0}
	}
	return out, rows.Err()
}

// ReadSnapshot reads the latest value of every live /registry/ key of an
// etcd snapshot (a bbolt file, optionally with the SHA-256 etcd's snapshot
// stream appends, which is checked).
func ReadSnapshot(path string) (map[string]kv, error) {
	f, err := verifiedSnapshot(path)
	if err != nil {
		return nil, err
	}
	if f != path {
		defer os.Remove(f)
	}
	db, err := bolt.Open(f, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening the snapshot: %w", err)
	}
	defer db.Close()
	out := map[string]kv{}
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("key"))
		if b == nil {
			return errors.New("not an etcd snapshot: no key bucket")
		}
		// Keys are revisions in order; the last one of a key wins and a
		// tombstone (a revision key ending in 't') deletes it.
		return b.ForEach(func(rev, v []byte) error {
			var e mvccpb.KeyValue
			if err := proto.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decoding revision %x: %w", rev, err)
			}
			k := string(e.Key)
			if !strings.HasPrefix(k, "/registry/") || k == healthKey {
				return nil
			}
			if len(rev) == 18 && rev[17] == 't' {
				delete(out, k)
				return nil
			}
			out[k] = kv{value: bytes.Clone(e.Value), leased: e.Lease != 0}
			return nil
		})
	})
	return out, err
}

// verifiedSnapshot returns a bbolt file to open: path itself, or a copy
// without the SHA-256 trailer etcd's Snapshot stream ends with, once the
// hash matches.
func verifiedSnapshot(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Size()%512 != sha256.Size {
		return path, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".snapshot-*.db")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(f, st.Size()-sha256.Size)); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", err
	}
	tmp.Close()
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil || !bytes.Equal(want, h.Sum(nil)) {
		os.Remove(tmp.Name())
		return "", errors.New("the etcd snapshot's SHA-256 does not match: the file is damaged")
	}
	return tmp.Name(), nil
}

// importKVs writes kvs through c, creating each key or updating it when
// its value differs; keys that had a lease share one new lease.
func importKVs(ctx context.Context, c *clientv3.Client, kvs map[string]kv, log *slog.Logger) (int, error) {
	var lease clientv3.LeaseID
	for _, v := range kvs {
		if v.leased {
			g, err := c.Grant(ctx, int64(eventLeaseTTL.Seconds()))
			if err != nil {
				return 0, fmt.Errorf("granting a lease for imported events: %w", err)
			}
			lease = g.ID
			break
		}
	}
	keys := make(chan string)
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range keys {
				if err := put(ctx, c, k, kvs[k], lease); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", k, err)
						cancel()
					}
					mu.Unlock()
				}
			}
		}()
	}
	for k := range kvs {
		select {
		case keys <- k:
		case <-ctx.Done():
		}
	}
	close(keys)
	wg.Wait()
	if first != nil {
		return 0, first
	}
	return len(kvs), ctx.Err()
}

// put creates k, or updates it if it holds another value; both through the
// transactions kine supports (the apiserver's create and update).
func put(ctx context.Context, c *clientv3.Client, k string, v kv, lease clientv3.LeaseID) error {
	var opts []clientv3.OpOption
	if v.leased && lease != 0 {
		opts = append(opts, clientv3.WithLease(lease))
	}
	for range 5 {
		// kine takes a create only without an Else: read separately.
		r, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, string(v.value), opts...)).Commit()
		if err != nil {
			return err
		}
		if r.Succeeded {
			return nil
		}
		g, err := c.Get(ctx, k)
		if err != nil {
			return err
		}
		if len(g.Kvs) == 0 {
			continue
		}
		if bytes.Equal(g.Kvs[0].Value, v.value) {
			return nil
		}
		u, err := c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", g.Kvs[0].ModRevision)).
			Then(clientv3.OpPut(k, string(v.value), opts...)).Else(clientv3.OpGet(k)).Commit()
		if err != nil {
			return err
		}
		if u.Succeeded {
			return nil
		}
	}
	return errors.New("the key kept changing while it was imported")
}
