package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/providers/metal"
)

func newMetalCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "metal",
		Short: "Bare-metal helpers for the metal provider",
		Long: `Helpers for the built-in metal provider (docs/metal.md), which installs
clusters on physical servers listed in an inventory file, powering them
through their BMCs (Redfish) and network-booting them into k2 OS.`,
	}
	inv := &cobra.Command{Use: "inventory", Short: "Check a server inventory"}
	inv.AddCommand(newMetalInventoryCheckCmd(g))
	cmd.AddCommand(inv)
	return cmd
}

func newMetalInventoryCheckCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "check FILE",
		Short: "Reach every server's BMC and show its power, model, serial and boot options",
		Long: `Read an inventory file, check its entries (each problem with its line), then
log in to every server's BMC over Redfish (8 at a time) and print its power
state, model, serial number, the boot override targets it offers (Pxe,
UefiHttp...) and whether it lists the inventory's boot MAC. Nothing is
changed on any server. Passwords come from each entry's passwordEnv or
passwordFile, never from the file itself.

Exit status: 0 when every BMC answered, 3 for an invalid inventory, 4 when
some BMC could not be read (bad credentials, unreachable...).`,
		Example: `  BMC_PASSWORD=… k2 metal inventory check inventory.yaml
  k2 metal inventory check inventory.yaml -o json | jq '.servers[] | select(.ok | not)'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := g.format()
			if err != nil {
				return err
			}
			rep, err := metal.CheckInventory(cmd.Context(), args[0], g.logger())
			if errors.Is(err, metal.ErrInventory) || rep == nil && err != nil {
				return usererr.Wrap(usererr.KindInvalid, err, "")
			}
			if rerr := output.Render(g.stdout, format, rep, func(w io.Writer) error { return renderInventory(w, rep) }); rerr != nil {
				return rerr
			}
			if err != nil {
				return usererr.Wrap(usererr.KindProvider, err, "see the error column")
			}
			return nil
		},
	}
}

func renderInventory(w io.Writer, rep *metal.InventoryReport) error {
	tw := output.Table(w)
	fmt.Fprintln(tw, "SERVER\tBMC\tPOWER\tMODEL\tSERIAL\tBOOT TARGETS\tMAC\tERROR")
	for _, s := range rep.Servers {
		mac := s.MAC
		if s.MACSeen != nil && !*s.MACSeen {
			mac += " (not listed by the BMC)"
		}
		model := strings.TrimSpace(s.Manufacturer + " " + s.Model)
		errText := ""
		if !s.OK {
			errText = s.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Endpoint, dash(s.PowerState), dash(model), dash(s.SerialNumber), dash(strings.Join(s.BootTargets, ",")), mac, errText)
	}
	return tw.Flush()
}
