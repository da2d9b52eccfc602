// Package dirlock holds an exclusive lock on a directory with flock(2): the
// kernel drops it when the holder dies, so a crash never leaves it stale.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrHeld is returned when another process holds the lock.
var ErrHeld = errors.New("directory is locked by another process")

// HeldError names the holder of a lock.
type HeldError struct {
	Dir string
	PID string // as the holder wrote it; "unknown" if unreadable
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s is in use by another k2 process (pid %s)", e.Dir, e.PID)
}

func (e *HeldError) Unwrap() error { return ErrHeld }

// Lock is a held lock.
type Lock struct{ f *os.File }

// Acquire takes <dir>/<name> exclusively without waiting, writing our pid.
func Acquire(dir, name string) (*Lock, error) {
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		pid := strings.TrimSpace(string(b))
		if pid == "" {
			pid = "unknown"
		}
		return nil, &HeldError{Dir: dir, PID: pid}
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{f: f}, nil
}

// Release drops the lock.
func (l *Lock) Release() {
	l.f.Truncate(0)
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
}
