//go:build unix

package state

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// processAlive reports whether pid runs and, when start is known, is the
// same process that recorded it (not a reuse of its pid).
func processAlive(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false // ESRCH: no such process
	}
	if start != "" {
		if now := processStart(pid); now != "" && now != start {
			return false
		}
	}
	return true
}

// processStart returns pid's start time in clock ticks since boot from
// /proc/<pid>/stat (field 22), or "" where /proc does not exist. A zombie
// (killed, not yet reaped) counts as gone.
func processStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	// comm (field 2) is in parentheses and may hold spaces: parse after the last ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22 → f[19].
	if len(f) < 20 {
		return ""
	}
	if f[0] == "Z" || f[0] == "X" {
		return "dead"
	}
	return f[19]
}
