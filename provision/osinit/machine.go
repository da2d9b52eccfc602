package osinit

import (
	"context"

	"k2.dev/k2/provision/machineconfig"
)

// machine is what k2 init does as PID 1 of k2 OS.
type machine struct {
	r *runner
}

func newMachine(r *runner) *machine { return &machine{r: r} }

// early mounts the system file systems, loads modules and starts DHCP.
func (m *machine) early(ctx context.Context) error { return nil }

// waitNetworkFor waits (bounded) for an address when a source needs the
// network.
func (m *machine) waitNetworkFor(ctx context.Context, sources []Source) {}

// configure applies the config's network, host name and data disk.
func (m *machine) configure(ctx context.Context, cfg *machineconfig.Config) error { return nil }

// finish syncs, unmounts and powers off or reboots.
func (m *machine) finish(action string, err error) {}

func (m *machine) addresses() []string { return nil }
func (m *machine) dataDisk() string    { return "" }
