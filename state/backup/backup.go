// Package backup makes consistent online backups of a k2 server's data
// directory — the datastore, the PKI and the join tokens — and restores
// them into a data directory.
//
// A SQLite datastore is copied with SQLite's VACUUM INTO, which reads one
// consistent snapshot while kine keeps writing; a raw copy of a live WAL
// database could be torn. An embedded etcd is saved as an etcd snapshot
// (the running member's, or its database file when the server is stopped);
// restoring one leaves it for the next server start to import into
// whichever datastore that server runs (state/datastore). The archive is a
// gzip'd tar with a manifest.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"k2.dev/k2/internal/dirlock"
	"k2.dev/k2/state/datastore"
)

// Layout of a data directory, as the server writes it.
const (
	DBPath       = "db/state.db"
	SnapshotPath = "db/etcd-snapshot.db"
	PKIDir       = "pki"
	TokensFile   = "tokens.json"
	ManifestFile = "k2-backup.json"
	serverLock   = "server.lock"
	formatV1     = "k2.dev/backup/v1"
)

// ErrNotEmpty is returned by Restore when the target already has a datastore.
var ErrNotEmpty = errors.New("data directory already holds a datastore")

// Manifest describes a backup.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	Source  string    `json:"source"`
	// Datastore is what the backup holds: sqlite (db/state.db) or etcd
	// (an etcd snapshot, db/etcd-snapshot.db).
	Datastore string   `json:"datastore,omitempty"`
	DBBytes   int64    `json:"dbBytes"`
	Files     []string `json:"files"`
	K2Version string   `json:"k2Version,omitempty"`
}

// Options for Backup; the zero value is valid.
type Options struct {
	K2Version string // recorded in the manifest
}

// Backup writes a backup of dataDir to w. It works while the server runs.
func Backup(ctx context.Context, dataDir string, w io.Writer, opts Options) (*Manifest, error) {
	tmp, err := os.MkdirTemp(dataDir, ".backup-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	snap, name, kind := filepath.Join(tmp, "state.db"), DBPath, datastore.ModeSQLite
	switch {
	case datastore.HasSQLite(dataDir):
		db := filepath.Join(dataDir, DBPath)
		if err := vacuumInto(ctx, db, snap); err != nil {
			return nil, fmt.Errorf("snapshotting %s: %w", db, err)
		}
	case datastore.HasEtcd(dataDir):
		snap, name, kind = filepath.Join(tmp, "etcd-snapshot.db"), SnapshotPath, datastore.ModeEtcd
		if err := etcdSnapshot(ctx, dataDir, snap); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("no SQLite datastore or embedded etcd in %s (a server on an external etcd, Postgres or MySQL is backed up with that database's own tools)", dataDir)
	}
	st, err := os.Stat(snap)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Format: formatV1, Created: time.Now().UTC().Truncate(time.Second), Source: dataDir, Datastore: kind, DBBytes: st.Size(), K2Version: opts.K2Version}

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	files := []struct{ src, name string }{{snap, name}}
	if tf := filepath.Join(dataDir, TokensFile); exists(tf) {
		files = append(files, struct{ src, name string }{tf, TokensFile})
	}
	err = filepath.WalkDir(filepath.Join(dataDir, PKIDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".tmp") {
			return err
		}
		files = append(files, struct{ src, name string }{p, PKIDir + "/" + d.Name()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading PKI: %w", err)
	}
	for _, f := range files {
		m.Files = append(m.Files, f.name)
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeEntry(tw, ManifestFile, 0o644, int64(len(mb)), strings.NewReader(string(mb))); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := addFile(tw, f.src, f.name); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return m, gz.Close()
}

func vacuumInto(ctx context.Context, src, dst string) error {
	conn, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "VACUUM INTO ?", dst)
	return err
}

// Restore unpacks a backup into dataDir. It refuses when a server runs on
// dataDir, and, unless force, when dataDir already has a datastore. The
// files are unpacked beside dataDir first and moved in only when complete.
func Restore(ctx context.Context, r io.Reader, dataDir string, force bool) (*Manifest, error) {
	return RestoreWith(ctx, r, dataDir, RestoreOptions{Force: force})
}

// RestoreOptions tune RestoreWith; the zero value restores everything into
// a data directory without a datastore.
type RestoreOptions struct {
	// Force replaces a datastore dataDir already has.
	Force bool
	// DatastoreOnly keeps dataDir's PKI and join tokens: a server given its
	// identity another way (k2 migrate seeds the new server with the old
	// cluster's CA and a join token of its own) takes only the objects.
	DatastoreOnly bool
	// Locked: the caller holds dataDir's server lock (a server restoring
	// into its own data directory before it starts).
	Locked bool
}

// RestoreWith is Restore with options.
func RestoreWith(ctx context.Context, r io.Reader, dataDir string, o RestoreOptions) (*Manifest, error) {
	force := o.Force
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	if !o.Locked {
		lock, err := dirlock.Acquire(dataDir, serverLock)
		if err != nil {
			return nil, fmt.Errorf("restoring into %s: %w; stop the server first", dataDir, err)
		}
		defer lock.Release()
	}
	_, _, pending := datastore.PendingImport(dataDir)
	if (datastore.HasSQLite(dataDir) || datastore.HasEtcd(dataDir) || pending) && !force {
		return nil, fmt.Errorf("%s: %w; restore into an empty --data-dir, or pass --force to replace it", dataDir, ErrNotEmpty)
	}
	stage, err := os.MkdirTemp(dataDir, ".restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	m, err := unpack(ctx, r, stage)
	if err != nil {
		return nil, err
	}
	// Replace what the backup holds; drop the old WAL so SQLite cannot
	// replay it onto the restored database, and an old etcd member.
	stales := []string{DBPath, DBPath + "-wal", DBPath + "-shm", "db/" + datastore.EtcdDir, "db/" + datastore.EtcdMemberFile, "db/" + datastore.ImportFile}
	moves := [][2]string{{DBPath, DBPath}}
	if !o.DatastoreOnly {
		stales = append(stales, PKIDir)
		moves = append(moves, [2]string{PKIDir, PKIDir}, [2]string{TokensFile, TokensFile})
	}
	for _, stale := range stales {
		os.RemoveAll(filepath.Join(dataDir, stale))
	}
	if m.Datastore == datastore.ModeEtcd {
		moves[0] = [2]string{SnapshotPath, "db/" + datastore.SnapshotImportPath}
	}
	for _, mv := range moves {
		src := filepath.Join(stage, mv[0])
		if !exists(src) {
			continue
		}
		dst := filepath.Join(dataDir, mv[1])
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return nil, err
		}
		os.RemoveAll(dst)
		if err := os.Rename(src, dst); err != nil {
			return nil, err
		}
	}
	if m.Datastore == datastore.ModeEtcd {
		// The next server start imports it into its datastore.
		if err := datastore.MarkImport(dataDir, datastore.ImportSnapshot, datastore.SnapshotImportPath); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func unpack(ctx context.Context, r io.Reader, dir string) (*Manifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a k2 backup (gzip): %w", err)
	}
	tr := tar.NewReader(gz)
	var m *Manifest
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading backup: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(name, "..") {
			return nil, fmt.Errorf("backup entry %q escapes the data directory", h.Name)
		}
		if name == ManifestFile {
			m = &Manifest{}
			if err := json.NewDecoder(tr).Decode(m); err != nil {
				return nil, fmt.Errorf("reading backup manifest: %w", err)
			}
			if m.Format != formatV1 {
				return nil, fmt.Errorf("backup format %q is not supported by this k2 (want %s)", m.Format, formatV1)
			}
			continue
		}
		dst := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o777)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
	}
	if m == nil {
		return nil, errors.New("not a k2 backup: no manifest")
	}
	if m.Datastore == "" {
		m.Datastore = datastore.ModeSQLite // backups made before etcd
	}
	want := DBPath
	if m.Datastore == datastore.ModeEtcd {
		want = SnapshotPath
	}
	if !exists(filepath.Join(dir, want)) {
		return nil, fmt.Errorf("backup has no datastore (%s)", want)
	}
	return m, nil
}

func addFile(tw *tar.Writer, src, name string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return writeEntry(tw, name, int64(st.Mode().Perm()), st.Size(), f)
}

func writeEntry(tw *tar.Writer, name string, mode, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: size, ModTime: time.Now(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err := io.Copy(tw, r)
	return err
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// etcdSnapshot saves the embedded etcd of dataDir to dst: from the running
// member when the server runs, else from its database file.
func etcdSnapshot(ctx context.Context, dataDir, dst string) error {
	lock, err := dirlock.Acquire(dataDir, serverLock)
	if err == nil {
		// Stopped: the member's bbolt file is at rest; copy it in one read
		// transaction.
		defer lock.Release()
		return copyBolt(filepath.Join(dataDir, "db", datastore.EtcdDir, "member", "snap", "db"), dst)
	}
	c, url, err := datastore.DialEtcd(dataDir)
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := c.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("taking an etcd snapshot from %s: %w", url, err)
	}
	defer rc.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return fmt.Errorf("taking an etcd snapshot from %s: %w", url, err)
	}
	return f.Close()
}

// copyBolt writes a consistent copy of the bbolt database src to dst.
func copyBolt(src, dst string) error {
	db, err := bolt.Open(src, 0o400, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("opening the etcd database %s: %w", src, err)
	}
	defer db.Close()
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(f)
		return err
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// ReadManifest reads the manifest of the backup archive r.
func ReadManifest(r io.Reader) (*Manifest, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("not a k2 backup (gzip): %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, errors.New("not a k2 backup: no manifest")
		}
		if err != nil {
			return nil, fmt.Errorf("reading backup: %w", err)
		}
		if filepath.Clean(h.Name) != ManifestFile {
			continue
		}
		m := &Manifest{}
		if err := json.NewDecoder(tr).Decode(m); err != nil {
			return nil, fmt.Errorf("reading backup manifest: %w", err)
		}
		if m.Datastore == "" {
			m.Datastore = datastore.ModeSQLite
		}
		return m, nil
	}
}
