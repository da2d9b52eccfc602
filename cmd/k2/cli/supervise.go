package cli

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"k2.dev/k2/internal/supervise"
)

// newSuperviseCmd runs a command and restarts it when it fails: the
// local provider's babysitter for each machine's agent or server. Hidden:
// the provider runs it, users do not. It exits as the command last did.
func newSuperviseCmd(_ *globals) *cobra.Command {
	o := supervise.Options{Stdout: os.Stdout, Stderr: os.Stderr}
	cmd := &cobra.Command{
		Use:   "supervise [flags] -- COMMAND [ARG...]",
		Short: "Run a command, restarting it when it fails (the local provider's babysitter)",
		Long: `Run COMMAND and restart it whenever it exits with a non-zero status, after a
delay that doubles (from 1 s) while it keeps failing soon after starting.
After --max-quick-failures exits in a row within --quick of starting it is
not restarted: supervise exits with its status. SIGTERM or SIGINT is passed
on to the command; supervise then waits for it and exits 0.`,
		Example: `  k2 supervise -- k2 agent --server https://10.0.0.2:6443 --data-dir /var/lib/k2/agent`,
		Hidden:  true,
		Args:    cobra.MinimumNArgs(1),
		Run: func(cmd *cobra.Command, args []string) {
			o.Argv = args
			supervise.Exit(supervise.Run(cmd.Context(), o))
		},
	}
	cmd.Flags().IntVar(&o.MaxQuickFailures, "max-quick-failures", 3, "quick failures in a row after which the command is not restarted")
	cmd.Flags().DurationVar(&o.Quick, "quick", 30*time.Second, "an exit this soon after the start is a quick failure")
	return cmd
}
