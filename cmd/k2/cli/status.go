package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/output"
	"k2.dev/k2/provision/cluster"
	"k2.dev/k2/provision/machine"
	"k2.dev/k2/state"
)

func newStatusCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [env]",
		Short: "Show an environment's machines, nodes, layers, apps and health",
		Long: `Show an environment: its last deployment, health, machines, servers, nodes,
Apps and layers. The machines are k2's records beside what the environment's
provider reports of them now (one List call): PROVIDER STATE is running,
stopped, failed, pending or missing (the provider no longer has it), with
the addresses the provider reports. A stopped, failed or missing machine
makes the environment unhealthy. If the provider cannot be asked, a warning
line says so and the rest is shown as k2 knows it.`,
		Example: `  k2 status
  k2 status prod -o json | jq .healthy`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.format()
			if err != nil {
				return err
			}
			env := DefaultEnv
			if len(args) == 1 {
				env = args[0]
			}
			s, err := g.openState(cmd.Context())
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := cluster.GetStatus(cmd.Context(), s, g.home, env, cluster.WithProvider(g.providerOpener()))
			if err != nil {
				return err
			}
			return output.Render(g.stdout, f, st, func(w io.Writer) error { return writeStatus(w, st) })
		},
	}
	return cmd
}

func writeStatus(w io.Writer, st *cluster.Status) error {
	health := "healthy"
	if !st.Healthy {
		health = "unhealthy: " + strings.Join(st.Problems, "; ")
	}
	fmt.Fprintf(w, "Environment:\t%s (provider %s)\n", st.Env.Name, st.Env.Provider)
	if st.Last != nil {
		fmt.Fprintf(w, "Last:\t%s %s %s (%s)\n", st.Last.Op, st.Last.ArtifactRef, st.Last.Result, st.Last.StartedAt.Format("2006-01-02 15:04:05Z07:00"))
	}
	fmt.Fprintf(w, "Health:\t%s\n", health)
	if st.ProviderWarning != "" {
		fmt.Fprintf(w, "Warning:\t%s\n", st.ProviderWarning)
	}
	if f := st.Failure; f != nil {
		where := f.Step
		if f.Item != "" {
			where += ", " + f.Item
		}
		fmt.Fprintf(w, "Stopped at:\t%s\nReason:\t%s\n", where, strings.ReplaceAll(f.Reason, "\n", "\n\t"))
		fmt.Fprintf(w, "Next:\tfix the cause, then '%s' to continue from there; or '%s' to delete its machines\n", f.Next[0], f.Next[1])
	}
	t := output.Table(w)
	asked := slices.ContainsFunc(st.Machines, func(m cluster.MachineStatus) bool { return m.ProviderState != "" })
	if asked {
		fmt.Fprintln(t, "\nMACHINE\tROLE\tPOOL\tSTATE\tPROVIDER ID\tPROVIDER STATE\tADDRESSES")
	} else {
		fmt.Fprintln(t, "\nMACHINE\tROLE\tPOOL\tSTATE\tPROVIDER ID")
	}
	for _, m := range st.Machines {
		if !asked {
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Pool, m.State, m.ProviderID)
			continue
		}
		addrs := m.ProviderAddresses
		if len(addrs) == 0 && m.ProviderState != machine.StateMissing {
			addrs = m.Addresses
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.Pool, m.State, dash(m.ProviderID),
			m.ProviderState, dash(strings.Join(addrs, ",")))
	}
	if len(st.Servers) > 0 {
		fmt.Fprintln(t, "\nSERVER\tDATASTORE\tROLE\tHEALTH\tAPI\tLEADS")
		for _, sv := range st.Servers {
			health := "ok"
			if !sv.Healthy {
				health = "unhealthy: " + sv.Error
			}
			role := sv.Role
			if role == "" {
				role = "-"
			}
			ds := sv.Datastore
			if ds == "" {
				ds = "?"
			}
			leads := strings.Join(sv.Leading, ",")
			if leads == "" {
				leads = "-"
			}
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\n", sv.Name, ds, role, health, sv.APIURL, leads)
		}
	}
	fmt.Fprintln(t, "\nNODE\tREADY\tRUNTIME\tPOOL")
	var reasons []string
	for _, n := range st.Nodes {
		rt := n.Runtime
		if n.RuntimeReason != "" {
			rt += " (*)"
			reasons = append(reasons, n.Name+": "+n.RuntimeReason)
		}
		fmt.Fprintf(t, "%s\t%v\t%s\t%s\n", n.Name, n.Ready, rt, n.Pool)
	}
	for _, r := range reasons {
		fmt.Fprintf(t, "(*) simulated pods on %s\n", r)
	}
	fmt.Fprintln(t, "\nAPP\tREADY\tREPLICAS\tURL")
	for _, a := range st.Apps {
		fmt.Fprintf(t, "%s/%s\t%v\t%s\t%s\n", a.Namespace, a.Name, a.Ready, a.Replicas, a.URL)
	}
	fmt.Fprintln(t, "\nLAYER\tDIGEST")
	for _, name := range state.SortedKeys(st.Layers) {
		fmt.Fprintf(t, "%s\t%s\n", name, st.Layers[name])
	}
	return t.Flush()
}
