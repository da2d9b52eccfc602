package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/controlplane"
)

func newKubeconfigCmd(g *globals) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the admin kubeconfig of the k2 server on this host",
		Example: `  k2 kubeconfig --data-dir /tmp/k2 > ~/.kube/config
  kubectl --kubeconfig <(k2 kubeconfig) get nodes`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(dataDir, controlplane.AdminKubeconfig)
			b, err := os.ReadFile(path)
			if os.IsNotExist(err) {
				return usererr.Wrap(usererr.KindFailure, fmt.Errorf("no kubeconfig at %s", path), "start 'k2 server --data-dir "+dataDir+"' first, or pass the server's --data-dir")
			}
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	addDataDirFlag(cmd, &dataDir)
	return cmd
}
