package artifact

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"oras.land/oras-go/v2/content/oci"
)

// Writers of the store (build, pull, load, tag, remove) hold an exclusive
// flock(2) on <store>.lock, so that two k2 processes never overwrite each
// other's index.json, and a removal's garbage collection never deletes the
// blobs of a build in progress. Readers take no lock. The lock is reentrant
// within a process; the kernel drops it if k2 dies.

var (
	lockMu    sync.Mutex
	lockFiles = map[string]*heldLock{}
)

type heldLock struct {
	f *os.File
	n int
}

// lock takes the store's write lock, waiting while another process holds
// it, and reloads the index so this process sees the other's changes. The
// returned function releases it.
func (s *Store) lock(ctx context.Context) (func(), error) {
	path := s.dir + ".lock"
	if filepath.Base(s.dir) == "." || filepath.Base(s.dir) == "/" {
		path = filepath.Join(s.dir, ".k2.lock")
	}
	lockMu.Lock()
	defer lockMu.Unlock()
	if h, ok := lockFiles[path]; ok {
		h.n++
		return s.unlocker(path), nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking store: %w", err)
	}
	for waited := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK {
			f.Close()
			return nil, fmt.Errorf("locking store: %w", err)
		}
		if !waited && s.Logger != nil {
			s.Logger.Info("waiting for another k2 process to finish with the store", "dir", s.dir)
		}
		waited = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	fresh, err := oci.NewWithContext(ctx, s.dir)
	if err != nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return nil, fmt.Errorf("reloading store: %w", err)
	}
	s.oci = fresh
	lockFiles[path] = &heldLock{f: f, n: 1}
	return s.unlocker(path), nil
}

func (s *Store) unlocker(path string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			lockMu.Lock()
			defer lockMu.Unlock()
			h := lockFiles[path]
			if h == nil {
				return
			}
			if h.n--; h.n == 0 {
				syscall.Flock(int(h.f.Fd()), syscall.LOCK_UN)
				h.f.Close()
				delete(lockFiles, path)
			}
		})
	}
}
