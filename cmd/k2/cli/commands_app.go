package cli

import (
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/usererr"
)

// appCommands returns the top-level commands of the app area.
func appCommands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newApplyCmd(g),
		newLintCmd(g),
	}
}

// kubeFlags select the cluster a command talks to.
type kubeFlags struct {
	kubeconfig string
	context    string
}

func (k *kubeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config); for a local k2 server: <data-dir>/admin.kubeconfig")
	cmd.Flags().StringVar(&k.context, "context", "", "kubeconfig context (default its current context)")
}

// restConfig loads the client configuration the flags name.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, usererr.Wrap(usererr.KindInvalid, err, "pass --kubeconfig (for a local k2 server: <data-dir>/admin.kubeconfig)")
	}
	return cfg, nil
}
