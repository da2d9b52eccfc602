// Record I/O: machine.json, the names and ids of machines, and the state
// observed from a machine's process.

package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k2.dev/k2/internal/supervise"
	"k2.dev/k2/providers/sdk"
)

// record is machine.json.
type record struct {
	sdk.Machine
	Command    []string `json:"command"`
	Env        []string `json:"env"`
	PoweredOff bool     `json:"poweredOff,omitempty"`
	// NetNS is the machine's network namespace; empty on the host network.
	NetNS string `json:"netns,omitempty"`
}

func machineDir(stateDir, name string) string {
	return filepath.Join(stateDir, "machines", name)
}

func idOf(name string) string { return "local-" + name }

func nameOf(id string) (string, bool) {
	n, ok := strings.CutPrefix(id, "local-")
	return n, ok && n != "" && !strings.ContainsAny(n, `/\`) && n != "." && n != ".."
}

func readRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, "machine.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".machine.json.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing machine record: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, "machine.json"))
}

// observe sets a record's State from its process.
func observe(dir string, r *record) {
	pid := pidOf(dir)
	switch {
	case pid != 0:
		r.State, r.Message = sdk.StateRunning, fmt.Sprintf("pid %d", pid)
	case r.PoweredOff:
		r.State, r.Message = sdk.StateStopped, "powered off"
	case r.State == sdk.StatePending:
	default:
		r.State, r.Message = sdk.StateFailed, "process exited: "+logTail(dir)
	}
}

// logTail says, from a machine's log, why its process exited: the error
// k2 printed last ("k2: ..." and the lines after it, joined), or a Go
// runtime's "panic: ..." or "fatal error: ..." line; failing those, the
// last line. The supervisor's notes (k2 supervise) are not reasons.
func logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
	return exitReason(string(b), filepath.Join(dir, "agent.log"))
}

// exitReason is logTail's reading of log (the file at path), at most 300
// bytes.
func exitReason(log, path string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if !strings.HasPrefix(l, supervise.Prefix) {
			lines = append(lines, l)
		}
	}
	reason := ""
	if len(lines) > 0 {
		reason = lines[len(lines)-1]
	}
	for i := len(lines) - 1; i >= 0 && i >= len(lines)-200; i-- {
		l := lines[i]
		if strings.HasPrefix(l, "k2: ") {
			// The error and its continuation lines, up to the next
			// log record (a restarted agent's).
			end := i + 1
			for end < len(lines) && !strings.HasPrefix(lines[end], "time=") {
				end++
			}
			reason = strings.Join(strings.Fields(strings.Join(lines[i:end], " ")), " ")
			break
		}
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			reason = l
			break
		}
	}
	if len(reason) > 300 {
		reason = strings.ToValidUTF8(reason[:300], "") + "…"
	}
	if strings.TrimSpace(reason) == "" {
		return "no output; see " + path
	}
	return reason
}
