package e2e

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
)

// checkCleanStop stops env's machines one by one the way an operator or
// `k2 init` would — SIGTERM to the process itself, not its group — agents
// first, then the server, and checks each one stops on its own within
// 60 s, through its components, leaving no process behind: not its
// containerd, no runc shim of its node, nothing else started from its
// machine directory. It runs before `k2 destroy`, which then finds the
// machines powered off.
func checkCleanStop(t *testing.T, home, env string) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(home, "local", "machines", env+"-*"))
	var agents, servers []string
	for _, d := range dirs {
		if strings.Contains(filepath.Base(d), "control-plane") {
			servers = append(servers, d)
		} else {
			agents = append(agents, d)
		}
	}
	if len(agents) == 0 || len(servers) != 1 {
		t.Fatalf("machines of %s: agents %v, servers %v", env, agents, servers)
	}
	for _, group := range [][]string{agents, servers} {
		pids := map[string]int{}
		for _, d := range group {
			pid := machinePidT(t, d)
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatalf("SIGTERM %s (pid %d): %v", d, pid, err)
			}
			pids[d] = pid
		}
		for d, pid := range pids {
			eventually(t, 60*time.Second, filepath.Base(d)+" to stop after SIGTERM", func() error {
				if alive(pid) {
					return errString("pid " + strconv.Itoa(pid) + " still running")
				}
				return nil
			})
			log, _ := os.ReadFile(filepath.Join(d, "agent.log"))
			want := "agent stopped"
			if strings.Contains(filepath.Base(d), "control-plane") {
				want = "control plane stopped"
			} else if !strings.Contains(string(log), "node torn down") {
				t.Errorf("%s: no 'node torn down' in its log:\n%s", d, lastLines(string(log), 20))
			}
			if !strings.Contains(string(log), want) {
				t.Errorf("%s: no %q in its log:\n%s", d, want, lastLines(string(log), 20))
			}
			for _, p := range procsMentioning(d, nodeRunDir(d)) {
				t.Errorf("%s stopped but left process %s", filepath.Base(d), p)
			}
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// machinePidT reads a local machine's pid file: its supervisor's pid
// (k2 supervise, which runs the agent or server and stops it on SIGTERM).
func machinePidT(t testing.TB, dir string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.Fields(string(raw))[0])
	return pid
}

// machineChild is the pid of the agent or server the supervisor of the
// local machine in dir runs.
func machineChild(t testing.TB, dir string) int {
	t.Helper()
	pid := machinePidT(t, dir)
	for _, word := range []string{"agent", "server"} {
		if c := childWith(pid, word); c != 0 {
			return c
		}
	}
	t.Fatalf("the supervisor (pid %d) of %s runs no agent or server", pid, dir)
	return 0
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(st)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// nodeRunDir is a node's directory in /run (containerd's socket and state;
// the runc shims name it in their arguments), read from the containerd
// config the agent wrote; "" for a machine without one.
func nodeRunDir(machineDir string) string {
	f, err := os.Open(filepath.Join(machineDir, "data", "containerd.toml"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.TrimSpace(k) == "address" {
			return filepath.Dir(strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	return ""
}

// procsMentioning lists live processes whose command line holds any of
// words (empty words are skipped).
func procsMentioning(words ...string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		for _, w := range words {
			if w != "" && strings.Contains(c, w) {
				out = append(out, e.Name()+": "+c)
				break
			}
		}
	}
	return out
}

// TestServerNamesFailingComponent: a server whose join port is taken fails
// to start, says which component failed and what to do, and leaves
// nothing running.
func TestServerNamesFailingComponent(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	cmd := exec.Command(k2Bin, "server", "--data-dir", dir, "--bind-address", "127.0.0.1",
		"--port", strconv.Itoa(testutil.FreePort(t)), "--join-port", strconv.Itoa(busy))
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("k2 server with a busy --join-port succeeded:\n%s", out)
	}
	for _, want := range []string{"starting join-server", "address already in use", "pick another --join-port"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, lastLines(string(out), 20))
		}
	}
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if ps := procsMentioning(dir); len(ps) > 0 {
		t.Errorf("processes left: %v", ps)
	}
}
