package cli

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// serverCommands returns the commands of the embedded control plane.
func serverCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newServerCmd(g),
		newKubeconfigCmd(g),
		newTokenCmd(g),
		newBackupCmd(g),
		newRestoreCmd(g),
	}
}

// defaultDataDir is /var/lib/k2 for root and ~/.k2 for anyone else.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/k2"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".k2")
	}
	return ".k2"
}

func addDataDirFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "data-dir", defaultDataDir(), "the server's data directory (PKI, kubeconfigs, SQLite datastore)")
}
