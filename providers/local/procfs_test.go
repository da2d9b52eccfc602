package local

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAliveUntilLastThread: a process whose main thread has exited (a
// zombie leader) while another thread still runs is alive — it still holds
// its files — and dead once that thread ends. The process is python3
// calling the exit syscall (only its own thread) from the main thread.
func TestAliveUntilLastThread(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	script := `import ctypes, threading, time
threading.Thread(target=lambda: time.sleep(2)).start()
ctypes.CDLL(None).syscall(60, 0)  # SYS_exit: this thread only
`
	cmd := exec.Command(py, "-c", script)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	leaderState := func() string {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
			return s[i+2 : i+3]
		}
		return ""
	}
	deadline := time.Now().Add(10 * time.Second)
	for leaderState() != "Z" {
		if time.Now().After(deadline) {
			t.Fatalf("the main thread did not exit (state %q)", leaderState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, alive := startTime(pid); !alive {
		t.Fatal("dead while a thread still runs")
	}
	for {
		if _, alive := startTime(pid); !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still alive after its last thread ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGroupAliveIgnoresUnreapedZombies: stop waits for a machine's process
// group to be empty. A process of it killed but not reaped yet (its parent,
// perhaps a PID 1 that reaps nobody, has not waited for it) is a zombie
// that kill(2) still finds; it holds nothing, so the group counts as gone.
func TestGroupAliveIgnoresUnreapedZombies(t *testing.T) {
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pgid := cmd.Process.Pid
	if !groupAlive(pgid) {
		t.Fatal("a group with a running process is not alive")
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); procStat(pgid).alive; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the killed process did not become a zombie")
		}
	}
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Fatalf("kill(2) no longer finds the unreaped zombie (%v): this test shows nothing", err)
	}
	if groupAlive(pgid) {
		t.Error("a group of one unreaped zombie is alive")
	}
}
