package osinit

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper collects every child that exits. As PID 1, k2 init inherits every
// orphan on the machine (containerd's shims re-parent to it), so it must
// wait for all of them; its own children's exits are handed to whoever
// started them with reaper.start. Nothing in k2 init calls exec.Cmd.Wait.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan syscall.WaitStatus
	exited  map[int]syscall.WaitStatus // exits of children not claimed yet
}

func newReaper() *reaper {
	return &reaper{waiting: map[int]chan syscall.WaitStatus{}, exited: map[int]syscall.WaitStatus{}}
}

// run reaps until ctx ends, on SIGCHLD and every second as a backstop.
func (r *reaper) run(ctx context.Context) error {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		r.reap()
		select {
		case <-ctx.Done():
			return nil
		case <-ch:
		case <-tick.C:
		}
	}
}

func (r *reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if c, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			c <- ws
		} else {
			r.exited[pid] = ws
			if len(r.exited) > 1024 { // orphans nobody waits for
				clear(r.exited)
			}
		}
		r.mu.Unlock()
	}
}

// start starts cmd and returns a channel that receives its exit status.
func (r *reaper) start(cmd *exec.Cmd) (<-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := make(chan syscall.WaitStatus, 1)
	pid := cmd.Process.Pid
	if ws, ok := r.exited[pid]; ok {
		delete(r.exited, pid)
		c <- ws
	} else {
		r.waiting[pid] = c
	}
	return c, nil
}

// output runs cmd to completion and returns its combined output.
func (r *reaper) output(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	done, err := r.start(cmd)
	pw.Close()
	if err != nil {
		return nil, err
	}
	out := make(chan []byte, 1)
	go func() {
		b, _ := readAllLimit(pr, 1<<20)
		out <- b
	}()
	select {
	case ws := <-done:
		cmd.Process.Release()
		b := <-out
		if !ws.Exited() || ws.ExitStatus() != 0 {
			return b, &exitError{ws: ws}
		}
		return b, nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		cmd.Process.Release()
		return nil, ctx.Err()
	}
}

// exitError is a child's unsuccessful exit.
type exitError struct{ ws syscall.WaitStatus }

func (e *exitError) Error() string { return describeExit(e.ws) }

func describeExit(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit status " + itoa(ws.ExitStatus())
	case ws.Signaled():
		return "killed by " + unix.SignalName(ws.Signal())
	}
	return "stopped"
}
