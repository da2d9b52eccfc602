// Flags common to the Kubernetes components run in-process.

package controlplane

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/pflag"
)

func (s *Server) common() []string {
	return []string{"--v=" + strconv.Itoa(s.cfg.Verbosity)}
}

func parseFlags(name string, sets map[string]*pflag.FlagSet, order []string, args []string) error {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	for _, n := range order {
		fs.AddFlagSet(sets[n])
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", name, err)
	}
	return nil
}
