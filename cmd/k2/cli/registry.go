package cli

import (
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"k2.dev/k2/artifact/devreg"
)

func newRegistryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "registry",
		Short: "Run a development OCI registry",
		Args:  exactArgs(0),
	}
	var addr string
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Serve an in-memory OCI registry until interrupted",
		Long: `Serve runs an OCI registry inside k2 (go-containerregistry's registry) on
ADDR until Ctrl-C, printing its address on stdout. Content is kept in memory
and lost when it stops; there is no authentication or TLS, so keep it on
loopback. It is meant for demos and tests:

  k2 registry serve --addr 127.0.0.1:5001 &
  k2 push 127.0.0.1:5001/hello:v1`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return devreg.Serve(cmd.Context(), addr, g.logger(), func(a net.Addr) {
				fmt.Fprintln(g.stdout, a.String())
				if f, ok := g.stdout.(interface{ Sync() error }); ok {
					f.Sync()
				}
				g.logger().Info("registry serving", "addr", a.String())
			})
		},
	}
	serve.Flags().StringVar(&addr, "addr", "127.0.0.1:5001", "address to listen on (port 0 picks a free one)")
	cmd.AddCommand(serve)
	return cmd
}
