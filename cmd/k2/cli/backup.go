package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/internal/version"
	"k2.dev/k2/state/backup"
)

func newBackupCmd(g *globals) *cobra.Command {
	var (
		dataDir, out, push string
		rf                 remoteFlags
	)
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Back up a server's datastore, PKI and tokens while it runs",
		Long: `Write a consistent copy of the server's SQLite datastore (taken with
VACUUM INTO while the server keeps running), its PKI and its join tokens to
a .tar.gz file. Restore it with 'k2 restore'.`,
		Example: `  k2 backup --data-dir /var/lib/k2 -o k2-backup.tar.gz
  k2 backup --data-dir /var/lib/k2 --push localhost:5000/backups/k2:nightly   # as an OCI artifact
  k2 backup --file k2-backup.tar.gz -o json     # JSON report for scripts
  k2 restore k2-backup.tar.gz --data-dir /var/lib/k2-new`,
		Annotations: map[string]string{annotationOIsFile: "true"},
		Args:        exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := g.format()
			if err != nil {
				// -o names the backup file, as in 'k2 backup -o FILE'.
				if out != "" {
					return usererr.Usage("give the backup file once: -o %s or --file %s", g.outFlag, out)
				}
				out, f = g.outFlag, output.Text
			}
			if out == "" && push == "" {
				return usererr.Usage("missing -o FILE (where to write the backup) or --push REF")
			}
			if out == "" {
				dir, err := os.MkdirTemp("", "k2-backup-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				out = filepath.Join(dir, "k2-backup.tar.gz")
			}
			tmp := out + ".partial"
			w, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			m, err := backup.Backup(cmd.Context(), dataDir, w, backup.Options{K2Version: version.Get().Version})
			if cerr := w.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, out); err != nil {
				return err
			}
			where := out
			if push != "" {
				if where, err = pushBackup(cmd.Context(), g, &rf, out, push, m); err != nil {
					return err
				}
			}
			return output.Render(g.stdout, f, struct {
				File string `json:"file"`
				*backup.Manifest
			}{where, m}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "backed up %s to %s (datastore %d bytes, %d files)\n", dataDir, where, m.DBBytes, len(m.Files))
				return err
			})
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&out, "file", "", "backup file to write (.tar.gz); -o FILE works too")
	cmd.Flags().StringVar(&push, "push", "", "also push the backup to an OCI registry as this reference")
	rf.register(cmd)
	return cmd
}

// pushBackup stores the backup file as a one-layer OCI artifact tagged ref
// and pushes it; it returns the digest-pinned reference.
func pushBackup(ctx context.Context, g *globals, rf *remoteFlags, file, ref string, m *backup.Manifest) (string, error) {
	s, err := g.openStore(ctx)
	if err != nil {
		return "", err
	}
	ann := map[string]string{artifact.AnnotationCreated: m.Created.Format(time.RFC3339), "dev.k2.backup.source": m.Source}
	if _, err := artifact.StoreFile(ctx, s, ref, artifact.BackupArtifactType, artifact.BackupMediaType, file, ann); err != nil {
		return "", err
	}
	pinned, _, err := artifact.Push(ctx, s, ref, rf.options(g))
	return pinned, err
}

// fetchBackup pulls a backup pushed with --push into a temporary file.
func fetchBackup(ctx context.Context, g *globals, rf *remoteFlags, ref string) (string, func(), error) {
	s, err := g.openStore(ctx)
	if err != nil {
		return "", nil, err
	}
	if _, err := artifact.Pull(ctx, s, ref, rf.options(g)); err != nil {
		return "", nil, err
	}
	f, err := os.CreateTemp("", "k2-restore-*.tar.gz")
	if err != nil {
		return "", nil, err
	}
	done := func() { os.Remove(f.Name()) }
	err = artifact.CopyFile(ctx, s, ref, artifact.BackupArtifactType, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		done()
		return "", nil, err
	}
	return f.Name(), done, nil
}

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		dataDir string
		force   bool
		rf      remoteFlags
	)
	cmd := &cobra.Command{
		Use:   "restore FILE|REF",
		Short: "Restore a backup into a server data directory",
		Long: `Unpack a backup made by 'k2 backup' into a data directory, then start
'k2 server' on it: every object comes back. The server must not be running
on that directory; an existing datastore is kept unless --force.`,
		Example: `  k2 restore k2-backup.tar.gz --data-dir /var/lib/k2-new
  k2 restore localhost:5000/backups/k2:nightly --data-dir /var/lib/k2-new
  k2 server --data-dir /var/lib/k2-new`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			file := args[0]
			if _, err := os.Stat(file); os.IsNotExist(err) && hasHost(file) {
				tmp, done, err := fetchBackup(cmd.Context(), g, &rf, file)
				if err != nil {
					return err
				}
				defer done()
				file = tmp
			}
			r, err := os.Open(file)
			if err != nil {
				return err
			}
			defer r.Close()
			m, err := backup.Restore(cmd.Context(), r, dataDir, force)
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, m, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "restored %s (taken %s from %s) into %s; start it with: k2 server --data-dir %s\n",
					args[0], m.Created.Format("2006-01-02 15:04:05Z07:00"), m.Source, dataDir, dataDir)
				return err
			})
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&force, "force", false, "replace an existing datastore in the data directory")
	rf.register(cmd)
	return cmd
}
