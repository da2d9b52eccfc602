package controlplane

import (
	"errors"

	"k2.dev/k2/internal/dirlock"
	"k2.dev/k2/internal/usererr"
)

// LockFile is the server's lock inside its data directory.
const LockFile = "server.lock"

func lockDir(dir string) (*dirlock.Lock, error) {
	l, err := dirlock.Acquire(dir, LockFile)
	var held *dirlock.HeldError
	if errors.As(err, &held) {
		return nil, usererr.Wrap(usererr.KindFailure, err, "stop that server first, or give this one its own --data-dir")
	}
	return l, err
}
