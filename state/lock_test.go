package state_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/state"
)

// childEnv makes the test binary act as a lock holder: it opens the store in
// $K2_STATE_TEST_HOME, locks the env named there, prints "locked" and waits
// to be killed.
const childEnv = "K2_STATE_TEST_LOCK_CHILD"

func TestMain(m *testing.M) {
	if env := os.Getenv(childEnv); env != "" {
		ctx := context.Background()
		s, err := state.Open(ctx, os.Getenv("K2_STATE_TEST_HOME"))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		if _, err := s.Lock(ctx, env, "k2 deploy reg/app:v1 --env "+env); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("locked")
		select {} // until SIGKILL
	}
	os.Exit(m.Run())
}

func TestLockAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	var logs testutil.SyncBuffer
	s := open(t, home, state.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=prod", "K2_STATE_TEST_HOME="+home)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			child.Process.Kill()
			child.Wait()
		}
	})
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("child said %q", line)
	}

	// The child holds the lock: we are refused, with its details.
	_, err = s.Lock(ctx, "prod", "k2 deploy reg/app:v2 --env prod")
	var le *state.LockedError
	if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
		t.Fatalf("Lock while held = %v, want *LockedError", err)
	}
	host, _ := os.Hostname()
	if le.Holder.PID != child.Process.Pid || le.Holder.Host != host || le.Holder.Command != "k2 deploy reg/app:v1 --env prod" || le.Holder.Since.IsZero() {
		t.Errorf("holder = %+v, want pid %d on %s", le.Holder, child.Process.Pid, host)
	}
	for _, want := range []string{`environment "prod" is locked`, fmt.Sprintf("pid %d", child.Process.Pid), host, "k2 deploy reg/app:v1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// Another environment is not affected.
	other, err := s.Lock(ctx, "dev", "k2 deploy")
	if err != nil {
		t.Fatalf("locking another env: %v", err)
	}
	other.Release(ctx)

	// kill -9 the holder: its row stays, but its process is gone, so the
	// lock is taken over (first while the child is a zombie, not yet reaped).
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var l *state.Lock
	deadline := time.Now().Add(5 * time.Second)
	for {
		l, err = s.Lock(ctx, "prod", "k2 deploy reg/app:v2 --env prod")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("lock of a killed holder not taken over: %v", err)
	}
	child.Wait()
	reaped = true
	if !strings.Contains(logs.String(), "taking over stale lock") || !strings.Contains(logs.String(), fmt.Sprintf("pid=%d", child.Process.Pid)) {
		t.Errorf("no log line about the takeover; logs:\n%s", logs.String())
	}
	h, stale, err := s.LockHolderOf(ctx, "prod")
	if err != nil || stale || h.PID != os.Getpid() {
		t.Errorf("LockHolderOf = %+v stale=%v err=%v; want this process", h, stale, err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.LockHolderOf(ctx, "prod"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("after Release, LockHolderOf = %v, want ErrNotFound", err)
	}
}

func TestLockInOneProcess(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	a, b := open(t, home), open(t, home) // two *sql.DB on one file
	la, err := a.Lock(ctx, "prod", "first")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Lock(ctx, "prod", "second"); !errors.Is(err, state.ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	// A cancelled context still releases (Release runs after Ctrl-C).
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := la.Release(cctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Lock(ctx, "prod", "second")
	if err != nil {
		t.Fatalf("Lock after Release = %v", err)
	}
	// The old holder's late Release does not free the new holder's lock.
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lock(ctx, "prod", "third"); !errors.Is(err, state.ErrLocked) {
		t.Errorf("a stale Release freed someone else's lock: %v", err)
	}
	if err := b.ForceUnlock(ctx, "prod"); err != nil {
		t.Fatal(err)
	}
	if l, err := a.Lock(ctx, "prod", "fourth"); err != nil {
		t.Errorf("Lock after ForceUnlock = %v", err)
	} else {
		l.Release(ctx)
	}
	_ = lb
}

// TestConcurrentWriters hammers one database from two *sql.DB (two pools of
// connections, as two k2 processes would) and many goroutines: no write may
// fail with "database is locked".
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	home := t.TempDir()
	stores := []*state.Store{open(t, home), open(t, home)}
	mustEnv(t, stores[0], "prod")
	d, err := stores[0].BeginDeployment(ctx, state.Deployment{Env: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	const workers, ops = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*ops)
	for w := range workers {
		s := stores[w%2]
		wg.Go(func() {
			for i := range ops {
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, err := s.StepStarted(ctx, d.ID, "machines", key); err != nil {
					errs <- err
				}
				if err := s.PutMachine(ctx, state.Machine{Env: "prod", Name: key, RequestID: key, Pool: "worker", Role: "worker", State: state.MachineCreated}); err != nil {
					errs <- err
				}
				if _, err := s.SetEnvValues(ctx, "prod", map[string]string{fmt.Sprintf("w%d", w): fmt.Sprint(i)}, nil); err != nil {
					errs <- err
				}
				if err := s.StepDone(ctx, d.ID, "machines", key, nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	j, _ := stores[1].Journal(ctx, d.ID)
	m, _ := stores[1].ListMachines(ctx, "prod")
	e, _ := stores[1].GetEnv(ctx, "prod")
	if len(j) != workers*ops || len(m) != workers*ops || len(e.Values) != workers {
		t.Errorf("journal %d, machines %d, values %d; want %d, %d, %d", len(j), len(m), len(e.Values), workers*ops, workers*ops, workers)
	}
	for _, r := range j {
		if r.State != state.StepDone {
			t.Errorf("%s: %s", r.Key, r.State)
		}
	}
}
