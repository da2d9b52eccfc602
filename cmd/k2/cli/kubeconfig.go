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
		dataDir, server string
		path            bool
	)
	cmd := &cobra.Command{
		Use:   "kubeconfig [env]",
		Short: "Print the admin kubeconfig of an environment, or of the k2 server on this host",
		Long: `With an environment name, print the admin kubeconfig k2 keeps (encrypted)
for the cluster it deployed there. Without one, print the admin kubeconfig
of the 'k2 server' whose --data-dir is given.

A cluster with several servers: the kubeconfig's current context is the
first server's address and it has one more context per server, named after
it (kubectl --context <name>); --server NAME|INDEX|URL makes that server the
current context instead. A load balancer in front of the servers needs: TCP
pass-through (TLS ends at the servers) to every server's API port, a health
check of GET /readyz over HTTPS, and its address in the servers' certificate
(k2 server --tls-san); then put its address in the kubeconfig.`,
		Example: `  k2 kubeconfig default > ~/.kube/config
  kubectl --kubeconfig "$(k2 kubeconfig prod --path)" get nodes
  k2 kubeconfig --data-dir /tmp/k2
  k2 kubeconfig prod --server prod-control-plane-2 > prod-2.kubeconfig`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				env := args[0]
				if server != "" {
					if path {
						return usererr.Usage("--path and --server exclude each other: the file k2 keeps names the first server")
					}
					s, err := g.openState(cmd.Context())
					if err != nil {
						return err
					}
					defer s.Close()
					b, err := cluster.Kubeconfig(cmd.Context(), s, g.home, env, server)
					if err != nil {
						return engine.UserError(err)
					}
					_, err = g.stdout.Write(b)
					return err
				}
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
	cmd.Flags().StringVar(&server, "server", "", "with several servers: the server (name, index or API URL) the kubeconfig's current context names")
	return cmd
}
