package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/machineconfig"
)

func newOSCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "os",
		Short: "k2 OS: the machine image providers boot, and its machine config",
		Long: `k2 OS is a Linux kernel and an initramfs whose init is k2 itself ('k2 init'):
a machine that boots it with a machine config becomes a control plane or a
node of a k2 cluster. See docs/os.md.`,
	}
	cfg := &cobra.Command{Use: "config", Short: "Check machine configs"}
	cfg.AddCommand(newOSConfigCheckCmd(g), newOSConfigGenCmd(g))
	cmd.AddCommand(cfg)
	return cmd
}

func newOSConfigCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE|-",
		Short: "Validate a machine config and print it without its secrets",
		Long: `Validate a machine config (docs/os.md) as k2 init would: every problem is
reported with its line and field. The config is printed with the join token's
secret and the cluster identity redacted. Exit code 3 when it is invalid.`,
		Example: `  k2 os config check machine.yaml
  k2 os config check - -o json < user-data`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			var b []byte
			if args[0] == "-" {
				b, err = io.ReadAll(io.LimitReader(g.stdin, machineconfig.MaxSize+1))
			} else {
				b, err = os.ReadFile(args[0])
			}
			if err != nil {
				return usererr.Wrap(usererr.KindUsage, err, "")
			}
			c, warns, err := machineconfig.Load(b)
			for _, w := range warns {
				fmt.Fprintln(g.stderr, "warning:", w)
			}
			if err != nil {
				return usererr.Wrap(usererr.KindInvalid, err, "see docs/os.md for the format")
			}
			r := c.Redacted()
			return output.Render(g.stdout, format, r, func(w io.Writer) error {
				b, err := machineconfig.Encode(r, false)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			})
		},
	}
}

func newOSConfigGenCmd(g *globals) *cobra.Command {
	var (
		dir string
		o   cluster.GenOptions
	)
	cmd := &cobra.Command{
		Use:   "gen -o DIR --server-address ADDR [--workers N]",
		Short: "Make a cluster identity and machine configs for machines installed by hand",
		Long: `Make a new cluster identity (CA, keys, join token) in DIR/cluster and one machine
config per machine: DIR/control-plane.yaml for the machine that serves the
cluster, DIR/worker-N.yaml for the nodes, and DIR/admin.kubeconfig. Give each
machine its file (a cidata volume's user-data, k2.config=URL, EC2 user-data or
'k2 init --config FILE'). Running it again keeps the identity, so workers can
be added later. k2 deploy makes these itself: this is for machines installed
without a provider. The files hold secrets (mode 0600).`,
		Example: `  k2 os config gen --dir ./lab --server-address 10.0.0.10 --workers 2
  k2 os config gen --dir ./lab --server-address api.lab.internal --data-disk /dev/vdb`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			if dir == "" || o.ServerAddress == "" {
				return usererr.Usage("--dir and --server-address are required")
			}
			if o.DataDisk == "none" {
				o.DataDisk = ""
			}
			res, gerr := cluster.GenerateMachineConfigs(dir, o)
			if gerr != nil {
				return usererr.Wrap(usererr.KindInvalid, gerr, "")
			}
			return output.Render(g.stdout, format, res, func(w io.Writer) error {
				fmt.Fprintln(w, res.ControlPlane)
				for _, p := range res.Workers {
					fmt.Fprintln(w, p)
				}
				fmt.Fprintf(g.stderr, "cluster identity in %s; kubeconfig %s (server %s)\n", filepath.Join(res.Dir, "cluster"), res.Kubeconfig, res.Server)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory for the identity and the configs")
	f.StringVar(&o.ServerAddress, "server-address", "", "the control plane's address or DNS name, as the nodes reach it")
	f.StringVar(&o.ControlPlaneName, "control-plane-name", "control-plane", "the control plane's node name")
	f.IntVar(&o.Workers, "workers", 1, "how many worker configs to write")
	f.StringSliceVar(&o.TLSSANs, "tls-san", nil, "extra names or addresses for the API server certificate")
	f.StringVar(&o.DataDisk, "data-disk", machineconfig.DataDiskAuto, "the disk for /var/lib/k2: auto, a device (/dev/vdb) or none")
	f.StringVar(&o.Runtime, "runtime", "", "the nodes' pod runtime: kubelet (default), auto or sim")
	return cmd
}
