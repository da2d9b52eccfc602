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
)

// process is a supervised child (k2 server, k2 agent): Start runs it and
// restarts it whenever it exits, with a growing delay; Stop sends SIGTERM,
// waits for a clean exit and kills its process group after StopTimeout.
// Its output goes to the console, each line prefixed with its name.
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
	// minBackoff is the first restart delay (default 2 s, doubled up to 30 s).
	minBackoff time.Duration

	mu       sync.Mutex
	cur      *os.Process
	stopping bool
	stopCh   chan struct{}
	done     chan struct{}
	restarts int
	lastExit string
}

var _ component = (*process)(nil)

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
	return nil
}

func (p *process) Start(context.Context) error {
	p.stopCh, p.done = make(chan struct{}), make(chan struct{})
	started := make(chan error, 1)
	go p.supervise(started)
	return <-started
}

func (p *process) Ready(ctx context.Context) error {
	if p.ready == nil {
		return nil
	}
	return p.ready(ctx)
}

// supervise runs the process until Stop; the first start's error goes to
// started.
func (p *process) supervise(started chan<- error) {
	defer close(p.done)
	backoff := p.minBackoff
	for first := true; ; first = false {
		t0 := time.Now()
		exited, err := p.spawn()
		if first {
			started <- err
			if err != nil {
				return
			}
		}
		if err != nil {
			p.log.Error("restarting failed", "process", p.name, "err", err)
		} else {
			ws := <-exited
			p.mu.Lock()
			p.cur.Release()
			p.cur, p.lastExit = nil, describeExit(ws)
			stopping := p.stopping
			p.mu.Unlock()
			if stopping {
				p.log.Info("process stopped", "process", p.name, "exit", describeExit(ws))
				return
			}
			if time.Since(t0) > 2*time.Minute {
				backoff = p.minBackoff // it ran well for a while
			}
			p.log.Warn("process exited; restarting", "process", p.name, "exit", describeExit(ws), "in", backoff)
		}
		select {
		case <-p.stopCh:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

func (p *process) spawn() (<-chan syscall.WaitStatus, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return nil, fmt.Errorf("stopping")
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	exited, err := p.reaper.start(cmd)
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	go p.console.copyLines(p.name, pr)
	p.cur = cmd.Process
	p.log.Info("process started", "process", p.name, "pid", cmd.Process.Pid)
	return exited, nil
}

func (p *process) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		<-p.done
		return nil
	}
	p.stopping = true
	close(p.stopCh)
	cur := p.cur
	p.mu.Unlock()
	if cur == nil {
		<-p.done
		return nil
	}
	cur.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(p.stopTimeout):
	case <-ctx.Done():
	}
	syscall.Kill(-cur.Pid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("%s did not stop within %s; killed it", p.name, p.stopTimeout)
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
