package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/machine"
)

func newMachineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "machine",
		Short: "Power an environment's machine on, off or reset it; read its console",
		Long: `Act on one machine of an environment through the environment's provider:
'power' switches it on or off or resets it, 'console' prints its console or
log. A machine is named as 'k2 status ENV' lists it (prod-worker-0), or
without the environment's prefix (worker-0).

The provider must offer the capability ('k2 plugin describe PROVIDER' shows
power and console); otherwise the command fails with exit code 4. k2's
record of the machine stays as it is: 'k2 status ENV' shows the provider's
state (running, stopped, missing...) beside it.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newMachinePowerCmd(g), newMachineConsoleCmd(g))
	return cmd
}

func newMachinePowerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "power <env> <machine> on|off|reset",
		Short: "Switch a machine on or off, or reset it",
		Long: `Switch a machine on or off, or reset it, through the environment's provider
(capability power), and print its state afterwards. What off means is the
provider's: the local provider stops the machine's process (and does not
start it again on a resumed deploy until 'on'), libvirt presses the ACPI
power button and pulls the plug after its shutdown_timeout, metal asks the
BMC. A powered-off node becomes NotReady in the cluster; after 'on' it
rejoins.`,
		Example: `  k2 machine power dev worker-0 off
  k2 machine power dev dev-worker-0 on -o json
  k2 machine power lab control-plane-0 reset`,
		Args: exactArgs(3),
		ValidArgsFunction: func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 2 {
				return machine.PowerActions, cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			s, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			r, err := machine.Power(cmd.Context(), s, args[0], args[1], args[2], g.providerOpener())
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, r, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "%s: power %s: %s\n", r.Machine, r.Action, r.State)
				return err
			})
		},
	}
}

func newMachineConsoleCmd(g *globals) *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "console <env> <machine>",
		Short: "Print a machine's console or log",
		Long: `Print a machine's console or log through the environment's provider
(capability console): the local provider's is the machine's agent.log, the
libvirt provider's the serial console log of every boot, aws's the EC2
console output. With -f it keeps printing what comes after until Ctrl-C
(which then exits 0) or the machine is gone.`,
		Example: `  k2 machine console dev worker-0
  k2 machine console lab control-plane-0 -f`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f, err := g.format(); err != nil || f != output.Text {
				return usererr.Usage("k2 machine console prints the console as it is; -o %s does not apply", g.outFlag)
			}
			s, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			return machine.Console(cmd.Context(), s, args[0], args[1], follow, g.stdout, g.providerOpener())
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until Ctrl-C")
	return cmd
}

// providerOpener starts a provider plugin by name for the provision
// packages, which close it.
func (g *globals) providerOpener() machine.Opener {
	return func(ctx context.Context, name string) (machine.Provider, io.Closer, error) {
		c, err := g.launchProvider(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		return c, c, nil
	}
}
