package cluster

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machine"
	"k2.dev/k2/state"
)

// While waiting for nodes, the deploy also asks the provider how the
// machines without a Ready node are: a machine it reports failed (a local
// machine whose agent exited, a VM that crashed) will never join, and its
// provider's message says why. When the wait times out, the error carries
// what the provider says of each such machine and the end of its console
// or log, so that a deploy's output alone shows why a node never came.

// machineCheckInterval is how often waitNodes asks the provider.
const machineCheckInterval = 5 * time.Second

// consoleTailLines is how many lines of a machine's console or log a
// timeout error shows.
const consoleTailLines = 8

// observeMachines asks the provider, in one List call, about the machines
// of the environment named in names, in k2's record order. A failed call
// or a provider that cannot say returns nil: these checks only add to
// what the nodes say.
func (c *run) observeMachines(ctx context.Context, st *engine.State, names []string) ([]state.Machine, []machine.Live) {
	if c.o.Provider == nil || len(names) == 0 {
		return nil, nil
	}
	all, err := st.Store.ListMachines(ctx, st.Env.Name)
	if err != nil {
		return nil, nil
	}
	var ms []state.Machine
	for _, m := range all {
		if slices.Contains(names, m.Name) {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return nil, nil
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	live, err := machine.Observe(lctx, c.o.Provider, c.o.ProviderConfig, ms)
	if err != nil {
		st.Log.Debug("asking the provider about machines without a node", "err", err)
		return nil, nil
	}
	return ms, live
}

// failedMachines are the machines of ms the provider reports failed (in
// live, as observeMachines returns them), with what it reports.
func failedMachines(ms []state.Machine, live []machine.Live) ([]state.Machine, []machine.Live) {
	var fm []state.Machine
	var fl []machine.Live
	for i := range ms {
		if live[i].ProviderState == sdk.StateFailed {
			fm, fl = append(fm, ms[i]), append(fl, live[i])
		}
	}
	return fm, fl
}

// maxReported is how many machines a failed node wait reports on.
const maxReported = 3

// machineReport is, for each machine of ms (the first maxReported), what
// its provider reported of it (live, from observeMachines) and the last
// lines of its console or log, when the provider offers the console:
// lines for a failed wait's error, so that the deploy's output (and the
// journal 'k2 status' shows) says why a node never came.
func (c *run) machineReport(ctx context.Context, st *engine.State, ms []state.Machine, live []machine.Live) string {
	var b strings.Builder
	for i, m := range ms {
		if i == maxReported {
			fmt.Fprintf(&b, "\n  (and %d more machines)", len(ms)-maxReported)
			break
		}
		l := live[i]
		fmt.Fprintf(&b, "\n  %s: provider %s reports it %s", m.Name, st.Env.Provider, l.ProviderState)
		if l.ProviderMessage != "" && l.ProviderState != sdk.StateFailed { // a failure's message is in the error already
			b.WriteString(" (" + l.ProviderMessage + ")")
		}
		lines := c.consoleTail(ctx, st, m)
		if len(lines) == 0 {
			continue
		}
		b.WriteString("; its console's last lines:")
		for _, ln := range lines {
			b.WriteString("\n    | " + ln)
		}
	}
	return b.String()
}

// consoler is a provider's Console call (sdk.Provider has it; the engine
// needs it only here).
type consoler interface {
	Console(ctx context.Context, req *sdk.ConsoleRequest) error
}

// consoleTail is the last consoleTailLines lines of machine m's console or
// log, or nil when the provider has none to give within a few seconds.
func (c *run) consoleTail(ctx context.Context, st *engine.State, m state.Machine) []string {
	p, ok := c.o.Provider.(consoler)
	if !ok || m.ProviderID == "" {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	w := &tailWriter{max: 64 << 10}
	if err := p.Console(cctx, &sdk.ConsoleRequest{Config: c.o.ProviderConfig, MachineID: m.ProviderID, Output: w}); err != nil {
		st.Log.Debug("reading a machine's console", "machine", m.Name, "err", err)
	}
	return w.lines(consoleTailLines, 240)
}

// tailWriter keeps the last max bytes written to it, from any goroutine.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b = append(w.b, p...)
	if over := len(w.b) - w.max; over > 0 {
		w.b = append(w.b[:0], w.b[over:]...)
	}
	return len(p), nil
}

// ansiEscape matches a terminal's escape sequences (colours, cursor moves)
// and any other lone ESC byte.
var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~])?`)

// lines is the last n non-blank lines kept, each cut to its last width
// bytes, without carriage returns and terminal escape sequences.
func (w *tailWriter) lines(n, width int) []string {
	w.mu.Lock()
	s := string(w.b)
	w.mu.Unlock()
	s = strings.ReplaceAll(ansiEscape.ReplaceAllString(s, ""), "\r", "")
	var out []string
	all := strings.Split(s, "\n")
	for i := len(all) - 1; i >= 0 && len(out) < n; i-- {
		l := strings.TrimRight(all[i], " \t")
		if strings.TrimSpace(l) == "" {
			continue
		}
		if len(l) > width {
			l = "…" + strings.ToValidUTF8(l[len(l)-width:], "")
		}
		out = append(out, l)
	}
	slices.Reverse(out)
	return out
}
