// Starting and stopping a machine's process.

package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// start runs the machine's command in a new session, detached from the
// plugin, and records its pid. A machine with a network namespace gets
// its namespace and veth (again, after a host reboot) and runs in it.
func start(stateDir, dir string, r record) error {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return err
	}
	argv := r.Command
	if supervised(r.Command) {
		// k2 restarts the agent or server if it fails, as k2 init does on
		// k2 OS (the kubelet inside an agent exits on some start-up
		// failures, relying on a babysitter).
		argv = append([]string{r.Command[0], "supervise", "--"}, argv...)
	}
	if r.NetNS != "" {
		n, err := ensureNetwork(stateDir)
		if err != nil {
			return err
		}
		if err := ensureMachineNet(stateDir, r.Name, r.Addresses[0], n); err != nil {
			return err
		}
		// nsenter switches only the network namespace and execs the
		// command (unlike `ip netns exec`, which remounts /sys and so hides
		// the cgroup file systems the kubelet needs).
		argv = append([]string{"nsenter", "--net=/run/netns/" + r.NetNS, "--"}, argv...)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(os.Environ()), r.Env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	// Reap it if it dies while this plugin process lives; afterwards init
	// (or the nearest subreaper) does.
	go func() { _ = cmd.Wait() }()
	st, _ := startTime(cmd.Process.Pid)
	return os.WriteFile(filepath.Join(dir, "pid"), []byte(fmt.Sprintf("%d %s\n", cmd.Process.Pid, st)), 0o644)
}

// supervised says whether a machine's command is k2's agent or server,
// which run under `k2 supervise` (from the same k2 binary).
func supervised(command []string) bool {
	return len(command) > 1 && (command[1] == "agent" || command[1] == "server")
}

// cleanEnv drops go-plugin's variables, which belong to this plugin
// process and not to the machine's.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PLUGIN_") || strings.HasPrefix(kv, "K2_PROVIDER_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// stop ends a machine's process group: SIGTERM, then SIGKILL after grace.
// It returns once every process of the group is gone (the supervisor and
// the agent or server it runs): a killed process holds its listening
// sockets and database lock until its last thread has exited, which for a
// large one on a loaded host takes well over a blink.
func stop(ctx context.Context, dir string) error {
	pid := pidOf(dir)
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	deadline := time.Now().Add(stopGrace)
	killed := false
	for pidOf(dir) != 0 || groupAlive(pid) {
		if !killed && (time.Now().After(deadline) || ctx.Err() != nil) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			killed, deadline = true, time.Now().Add(killGrace)
		} else if killed && time.Now().After(deadline) {
			return fmt.Errorf("process %d of %s still exiting %s after SIGKILL", pid, filepath.Base(dir), killGrace)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// cleanupNode removes what a killed agent left (shims, containers, mounts,
// cgroups): `k2 agent cleanup` in the machine's namespace. A cleanly
// stopped agent has done this itself; then it finds nothing.
func cleanupNode(dir string, r record) {
	if len(r.Command) < 2 || r.Command[1] != "agent" {
		return
	}
	cmd := exec.Command("nsenter", "--net=/run/netns/"+r.NetNS, "--", r.Command[0], "agent", "cleanup",
		"--data-dir", filepath.Join(dir, "data"), "--node-name", r.Name)
	cmd.Env = cleanEnv(os.Environ())
	_ = cmd.Run()
}

// groupAlive says whether process group pgid has a live process left: one
// that is not a zombie, or a zombie with a thread still exiting (a zombie
// whose parent does not reap it is gone for stop's purposes, though
// kill(2) would still find it).
func groupAlive(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return syscall.Kill(-pgid, 0) == nil
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p := procStat(pid); p.alive && p.group == pgid {
			return true
		}
	}
	return false
}
