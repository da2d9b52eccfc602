// PID discovery through procfs: the pid file checked against the
// process's start time, else the session leader whose working directory is
// the machine's.

package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// startTime returns a process's start time (field 22 of /proc/<pid>/stat)
// and whether it is alive (exists and is not a zombie).
func startTime(pid int) (string, bool) {
	p := procStat(pid)
	return p.start, p.alive
}

// procInfo is what procStat reads of a process.
type procInfo struct {
	start          string // start time, in clock ticks since boot
	group, session int
	// alive: it exists and is not a zombie, or is one whose last thread
	// is still exiting.
	alive bool
}

// procStat reads a process's start time, process group and session.
func procStat(pid int) procInfo {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procInfo{}
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	if i < 0 {
		return procInfo{}
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return procInfo{}
	}
	p := procInfo{start: f[19], alive: true}
	p.group, _ = strconv.Atoi(f[2])
	p.session, _ = strconv.Atoi(f[3])
	if f[0] == "Z" || f[0] == "X" {
		// The main thread has exited, but the process lives (and holds its
		// files: listening sockets, a database's lock) until its last
		// thread does — one stuck in fsync can take seconds.
		p.alive = threadsAlive(pid)
	}
	return p
}

// threadsAlive reports whether any thread of pid has not exited yet.
func threadsAlive(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+3 > len(s) {
			continue
		}
		if st := s[i+2]; st != 'Z' && st != 'X' {
			return true
		}
	}
	return false
}

// pidOf returns the live process of a machine dir, or 0. The pid file is
// checked first; without a valid one (the plugin died between starting the
// process and writing the file) the process is found by its working
// directory, which start sets to the machine dir.
func pidOf(dir string) int {
	if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if pid, err := strconv.Atoi(f[0]); err == nil && pid > 0 {
				if st, alive := startTime(pid); alive && st == f[1] {
					return pid
				}
			}
		}
	}
	return pidByCwd(dir)
}

// pidByCwd finds a live session leader whose working directory is dir.
func pidByCwd(dir string) int {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err != nil || cwd != abs {
			continue
		}
		// Only the session leader: children of the machine's process share
		// its working directory.
		if p := procStat(pid); p.alive && p.session == pid {
			return pid
		}
	}
	return 0
}
