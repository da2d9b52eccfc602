package controlplane

import (
	"context"
	"errors"
	"os"

	"k2.dev/k2/internal/dirlock"
	"k2.dev/k2/internal/usererr"
)

// LockFile is the server's lock inside its data directory.
const LockFile = "server.lock"

// dataDir is the component that holds the data directory: made and locked
// at Init, so no second server starts on it, released at Stop.
type dataDir struct {
	s    *Server
	lock *dirlock.Lock
}

func (d *dataDir) Name() string { return "data-dir" }

func (d *dataDir) Init(context.Context) error {
	if err := os.MkdirAll(d.s.cfg.DataDir, 0o700); err != nil {
		return err
	}
	l, err := lockDir(d.s.cfg.DataDir)
	if err != nil {
		return err
	}
	d.lock = l
	return nil
}

func (d *dataDir) Start(context.Context) error { return nil }

func (d *dataDir) Stop(context.Context) error {
	if d.lock != nil {
		d.lock.Release()
	}
	return nil
}

func lockDir(dir string) (*dirlock.Lock, error) {
	l, err := dirlock.Acquire(dir, LockFile)
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return nil, usererr.Wrap(usererr.KindFailure, err, "stop that server first, or give this one its own --data-dir")
	}
	return l, err
}
