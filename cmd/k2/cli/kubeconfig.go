package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/controlplane"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/state"
)

func newKubeconfigCmd(g *globals) *cobra.Command {
	var (
		dataDir string
		path    bool
	)
	cmd := &cobra.Command{
		Use:   "kubeconfig [env]",
		Short: "Print the admin kubeconfig of an environment, or of the k2 server on this host",
		Long: `With an environment name, print the admin kubeconfig k2 keeps (encrypted)
for the cluster it deployed there. Without one, print the admin kubeconfig
of the 'k2 server' whose --data-dir is given.`,
		Example: `  k2 kubeconfig default > ~/.kube/config
  kubectl --kubeconfig "$(k2 kubeconfig prod --path)" get nodes
  k2 kubeconfig --data-dir /tmp/k2`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				env := args[0]
				if path {
					p := cluster.KubeconfigPath(g.home, env)
					if _, err := os.Stat(p); err != nil {
						return usererr.New(usererr.KindFailure, "environment %s has no cluster; deploy one with 'k2 deploy <ref> --env %s'", env, env)
					}
					_, err := fmt.Fprintln(g.stdout, p)
					return err
				}
				s, err := g.openState(cmd.Context())
				if err != nil {
					return err
				}
				defer s.Close()
				b, err := s.GetSecret(cmd.Context(), env, state.SecretKubeconfig)
				if err != nil {
					return engine.UserError(err)
				}
				_, err = g.stdout.Write(b)
				return err
			}
			p := filepath.Join(dataDir, controlplane.AdminKubeconfig)
			if path {
				_, err := fmt.Fprintln(g.stdout, p)
				return err
			}
			b, err := os.ReadFile(p)
			if os.IsNotExist(err) {
				return usererr.Wrap(usererr.KindFailure, fmt.Errorf("no kubeconfig at %s", p), "start 'k2 server --data-dir "+dataDir+"' first, pass the server's --data-dir, or name an environment")
			}
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	addDataDirFlag(cmd, &dataDir)
	cmd.Flags().BoolVar(&path, "path", false, "print the kubeconfig's path instead of its contents")
	return cmd
}
