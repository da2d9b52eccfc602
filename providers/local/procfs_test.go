package local

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
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
