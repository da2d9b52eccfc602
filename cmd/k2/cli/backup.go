package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/internal/version"
	"k2.dev/k2/state/backup"
)

func newBackupCmd(g *globals) *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "backup -o FILE",
		Short: "Back up a server's datastore, PKI and tokens while it runs",
		Long: `Write a consistent copy of the server's SQLite datastore (taken with
VACUUM INTO while the server keeps running), its PKI and its join tokens to
a .tar.gz file. Restore it with 'k2 restore'.`,
		Example: `  k2 backup --data-dir /var/lib/k2 -o k2-backup.tar.gz
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
			if out == "" {
				return usererr.Usage("missing -o FILE: where to write the backup")
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
			return output.Render(g.stdout, f, struct {
				File string `json:"file"`
				*backup.Manifest
			}{out, m}, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "backed up %s to %s (datastore %d bytes, %d files)\n", dataDir, out, m.DBBytes, len(m.Files))
				return err
			})
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().StringVar(&out, "file", "", "backup file to write (.tar.gz); -o FILE works too")
	return cmd
}

func newRestoreCmd(g *globals) *cobra.Command {
	var (
		dataDir string
		force   bool
	)
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Restore a backup into a server data directory",
		Long: `Unpack a backup made by 'k2 backup' into a data directory, then start
'k2 server' on it: every object comes back. The server must not be running
on that directory; an existing datastore is kept unless --force.`,
		Example: `  k2 restore k2-backup.tar.gz --data-dir /var/lib/k2-new
  k2 server --data-dir /var/lib/k2-new`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			r, err := os.Open(args[0])
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
	return cmd
}
