package cli

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/osinit"
)

type initFlags struct {
	config, dataDir, imds, socket string
}

func newInitCmd(g *globals) *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init [--config FILE|URL]",
		Short: "Run a machine from its machine config: k2 OS's init, or a supervisor on any Linux",
		Long: `Run this machine as its machine config says: 'k2 server' for the first
control plane (with the cluster identity the config carries), 'k2 agent' for a
node — both on a control plane, so it is a node too — restarting them when they
exit, until stopped.

In the k2 OS image k2 init is PID 1: it also mounts the system file systems,
loads kernel modules, brings the network up (DHCP, or the config's static
addresses), sets the host name, formats and mounts the data disk on
/var/lib/k2, and powers off or reboots cleanly on the ACPI power button,
'k2 init poweroff|reboot' or a signal (SIGUSR2/SIGPWR power off, SIGTERM/
SIGINT reboot).

On a machine that is already running (cloud-init on a stock image, a network
namespace in tests) run it as a service: 'k2 init --config FILE|URL'. SIGTERM
or 'k2 init stop' stops the children cleanly and exits.

Without --config it searches, in order: the kernel command line
(k2.config=URL, fetched over HTTP), a volume labelled cidata (its user-data
file; NoCloud), and the EC2 instance metadata service's user-data (IMDSv2;
asked only on EC2 or when --imds-endpoint, k2.imds=URL, $K2_IMDS_ENDPOINT or
$AWS_EC2_METADATA_SERVICE_ENDPOINT names an endpoint). Until one holds a valid
config it says what it tried and what is wrong, and retries.

The machine config format: docs/os.md ('k2 os config check FILE' validates one).`,
		Example: `  k2 init --config /etc/k2/machine.yaml
  k2 init --config http://10.0.0.1:8080/machines/w1.yaml --data-dir /var/lib/k2
  k2 init --imds-endpoint http://127.0.0.1:1338      # an IMDS fake
  k2 init status -o json
  k2 init poweroff`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runInit(cmd, g, f, os.Getpid() == 1)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "the machine config: a file or an http(s) URL (default: search the kernel command line, cidata, IMDS)")
	fl.StringVar(&f.dataDir, "data-dir", osinit.DefaultDataDir, "where the server and agent keep their state (server/, agent/)")
	fl.StringVar(&f.imds, "imds-endpoint", "", "instance metadata endpoint to read user-data from (default on EC2: the standard address)")
	cmd.PersistentFlags().StringVar(&f.socket, "socket", osinit.DefaultSocket, "k2 init's API socket")
	cmd.AddCommand(newInitStatusCmd(g, &f), newInitActionCmd(g, &f, osinit.ActionPowerOff, "Stop k2 cleanly, sync the disks and power the machine off"),
		newInitActionCmd(g, &f, osinit.ActionReboot, "Stop k2 cleanly, sync the disks and reboot the machine"),
		newInitActionCmd(g, &f, osinit.ActionStop, "Stop the server and agent cleanly; k2 init exits (when it is not PID 1)"))
	return cmd
}

// runInit runs k2 init; as PID 1 it never returns.
func runInit(cmd *cobra.Command, g *globals, f initFlags, pid1 bool) error {
	self, err := os.Executable()
	if err != nil && pid1 {
		// Before /proc is mounted: /init is a link to the k2 binary.
		self, err = filepath.EvalSymlinks("/init")
	}
	if err != nil {
		return err
	}
	console := io.Writer(g.stderr)
	log := g.logger()
	if pid1 {
		log = slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	err = osinit.Run(cmd.Context(), osinit.Options{
		Config:       f.config,
		IMDSEndpoint: f.imds,
		DataDir:      f.dataDir,
		K2Binary:     self,
		Socket:       f.socket,
		Machine:      pid1,
		Console:      console,
		Logger:       log,
	})
	return usererr.Wrap(usererr.KindFailure, err, "")
}

func newInitStatusCmd(g *globals, f *initFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show what k2 init runs: its config's source, role, processes",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			s, err := osinit.GetStatus(cmd.Context(), f.socket)
			if err != nil {
				return usererr.Wrap(usererr.KindFailure, err, "is k2 init running here? (--socket)")
			}
			return output.Render(g.stdout, format, s, func(w io.Writer) error {
				fmt.Fprintf(w, "phase:   %s\n", s.Phase)
				if s.Source != "" {
					fmt.Fprintf(w, "config:  from %s (%s %s)\n", s.Source, s.Role, s.Node)
				}
				if len(s.Addresses) > 0 {
					fmt.Fprintf(w, "address: %s\n", strings.Join(s.Addresses, ", "))
				}
				if s.DataDisk != "" {
					fmt.Fprintf(w, "data:    %s\n", s.DataDisk)
				}
				if s.LastError != "" {
					fmt.Fprintf(w, "error:   %s\n", s.LastError)
				}
				t := output.Table(w)
				fmt.Fprintln(t, "PROCESS\tPID\tRUNNING\tRESTARTS\tLAST EXIT")
				for _, p := range s.Processes {
					fmt.Fprintf(t, "%s\t%d\t%v\t%d\t%s\n", p.Name, p.PID, p.Running, p.Restarts, p.LastExit)
				}
				return t.Flush()
			})
		},
	}
}

func newInitActionCmd(g *globals, f *initFlags, action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   action,
		Short: short,
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := osinit.Request(cmd.Context(), f.socket, action); err != nil {
				return usererr.Wrap(usererr.KindFailure, err, "is k2 init running here? (--socket)")
			}
			fmt.Fprintf(g.stderr, "k2 init: %s requested\n", action)
			return nil
		},
	}
}
