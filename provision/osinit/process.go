package osinit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k2.dev/k2/internal/component"
)

// process is a supervised child (k2 server, k2 agent), a component:
// Start runs it, Run restarts it whenever it exits (after 2 s, doubling to
// 30 s, back to 2 s after two minutes of running) and, once the component
// is stopped, sends it SIGTERM, waits for a clean exit and kills its
// process group after stopTimeout. Its output goes to the console, each
// line prefixed with its name.
type process struct {
	name    string
	argv    []string
	env     []string // added to k2 init's environment
	console *console
	log     *slog.Logger
	reaper  *reaper
	// stopTimeout bounds a clean stop; default 90 s (an agent removes its
	// pods, a server checkpoints SQLite).
	stopTimeout time.Duration
	// ready, if set, is Ready: it waits until the process serves.
	ready func(ctx context.Context) error
	// minBackoff is the first restart delay (default 2 s).
	minBackoff time.Duration

	mu       sync.Mutex
	cur      *os.Process
	exited   <-chan syscall.WaitStatus // the current child's exit
	since    time.Time                 // when it started
	running  bool                      // Run was started
	done     chan struct{}             // closed when Run returns
	restarts int
	lastExit string
}

var (
	_ component.Component  = (*process)(nil)
	_ component.Runner     = (*process)(nil)
	_ component.Readier    = (*process)(nil)
	_ component.StopWaiter = (*process)(nil)
)

func (p *process) Name() string { return p.name }

func (p *process) Init(context.Context) error {
	if _, err := os.Stat(p.argv[0]); err != nil {
		return fmt.Errorf("%s: %w", p.argv[0], err)
	}
	if p.stopTimeout == 0 {
		p.stopTimeout = 90 * time.Second
	}
	if p.minBackoff == 0 {
		p.minBackoff = 2 * time.Second
	}
	p.done = make(chan struct{})
	return nil
}

func (p *process) Start(context.Context) error {
	if err := p.spawn(); err != nil {
		return err
	}
	p.mu.Lock()
	p.running = true
	p.mu.Unlock()
	return nil
}

func (p *process) Ready(ctx context.Context) error {
	if p.ready == nil {
		return nil
	}
	return p.ready(ctx)
}

func (p *process) StopTimeout() time.Duration { return p.stopTimeout + 10*time.Second }

// Run restarts the process whenever it exits, until ctx ends; then it
// stops it.
func (p *process) Run(ctx context.Context) error {
	defer close(p.done)
	backoff := p.minBackoff
	for {
		p.mu.Lock()
		exited, since := p.exited, p.since
		p.mu.Unlock()
		var ws syscall.WaitStatus
		if exited != nil {
			select {
			case <-ctx.Done():
				p.terminate(exited)
				return nil
			case ws = <-exited:
			}
			p.mu.Lock()
			p.cur.Release()
			p.cur, p.exited, p.lastExit = nil, nil, describeExit(ws)
			p.mu.Unlock()
			if time.Since(since) > 2*time.Minute {
				backoff = p.minBackoff // it ran well for a while
			}
			p.log.Warn("process exited; restarting", "process", p.name, "exit", describeExit(ws), "in", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		if err := p.spawn(); err != nil {
			p.log.Error("restarting failed", "process", p.name, "err", err)
		}
	}
}

// terminate sends SIGTERM, waits stopTimeout for the exit, then kills the
// process group.
func (p *process) terminate(exited <-chan syscall.WaitStatus) {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	cur.Signal(syscall.SIGTERM)
	var ws syscall.WaitStatus
	select {
	case ws = <-exited:
	case <-time.After(p.stopTimeout):
		p.log.Error("process did not stop in time; killing it", "process", p.name, "after", p.stopTimeout)
		syscall.Kill(-cur.Pid, syscall.SIGKILL)
		ws = <-exited
	}
	p.mu.Lock()
	cur.Release()
	p.cur, p.exited, p.lastExit = nil, nil, describeExit(ws)
	p.mu.Unlock()
	p.log.Info("process stopped", "process", p.name, "exit", describeExit(ws))
}

func (p *process) spawn() error {
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	exited, err := p.reaper.start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return err
	}
	go p.console.copyLines(p.name, pr) // ends at the child's exit (EOF)
	p.mu.Lock()
	p.cur, p.exited, p.since = cmd.Process, exited, time.Now()
	p.mu.Unlock()
	p.log.Info("process started", "process", p.name, "pid", cmd.Process.Pid)
	return nil
}

// Stop waits for Run to have stopped the process (the Manager ended Run's
// context first).
func (p *process) Stop(ctx context.Context) error {
	p.mu.Lock()
	running := p.running
	p.mu.Unlock()
	if !running {
		return nil
	}
	select {
	case <-p.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// status is what `k2 init status` shows of a process.
type processStatus struct {
	Name     string `json:"name"`
	PID      int    `json:"pid,omitempty"`
	Running  bool   `json:"running"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit,omitempty"`
}

func (p *process) status() processStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := processStatus{Name: p.name, Running: p.cur != nil, Restarts: p.restarts, LastExit: p.lastExit}
	if p.cur != nil {
		s.PID = p.cur.Pid
	}
	return s
}

// console serialises lines from several children onto one writer.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) copyLines(prefix string, r io.ReadCloser) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		c.mu.Lock()
		fmt.Fprintf(c.w, "%s: %s\n", prefix, sc.Bytes())
		c.mu.Unlock()
	}
}

func (c *console) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Write(b)
}

func itoa(i int) string { return strconv.Itoa(i) }

func readAllLimit(r io.Reader, n int64) ([]byte, error) { return io.ReadAll(io.LimitReader(r, n)) }
