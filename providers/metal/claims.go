package metal

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"k2.dev/k2/internal/atomicfile"
)

// claim is one server taken by one machine of one environment. Claims live
// in <stateDir>/claims.json, changed only under <stateDir>/lock, so two
// environments (or two concurrent deploys) never take the same server.
type claim struct {
	Server    string `json:"server"`
	Env       string `json:"env"`
	Machine   string `json:"machine"`
	RequestID string `json:"requestID"`
	Role      string `json:"role,omitempty"`
	Pool      string `json:"pool,omitempty"`
	// Labels are the machine's (the node's) labels.
	Labels    map[string]string `json:"labels,omitempty"`
	ClaimedAt time.Time         `json:"claimedAt"`
	// PoweredOn is set once the BMC accepted the power-on.
	PoweredOn bool `json:"poweredOn,omitempty"`
	// Boot is the last boot's progress: stage name -> time, bytes served.
	Boot      map[string]time.Time `json:"boot,omitempty"`
	BootBytes int64                `json:"bootBytes,omitempty"`
	Addresses []string             `json:"addresses,omitempty"`
	Message   string               `json:"message,omitempty"`
}

type claimFile struct {
	Claims []claim `json:"claims"`
}

// claims is the claims file, loaded under the lock.
type claims struct {
	dir    string
	lockFD *os.File
	claimFile
}

// openClaims takes the state directory's lock and reads the claims.
func openClaims(dir string) (*claims, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating state dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	c := &claims{dir: dir, lockFD: f}
	b, err := os.ReadFile(filepath.Join(dir, "claims.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		c.Close()
		return nil, err
	default:
		if err := json.Unmarshal(b, &c.claimFile); err != nil {
			c.Close()
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, "claims.json"), err)
		}
	}
	return c, nil
}

// Close releases the lock.
func (c *claims) Close() { c.lockFD.Close() }

// save writes the claims (atomically).
func (c *claims) save() error {
	b, err := json.MarshalIndent(c.claimFile, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(c.dir, "claims.json"), b, 0o600)
}

func (c *claims) byServer(name string) *claim {
	for i := range c.Claims {
		if c.Claims[i].Server == name {
			return &c.Claims[i]
		}
	}
	return nil
}

func (c *claims) byRequest(reqID, machine string) *claim {
	for i := range c.Claims {
		if c.Claims[i].RequestID == reqID && c.Claims[i].Machine == machine {
			return &c.Claims[i]
		}
	}
	return nil
}

func (c *claims) byMachine(machine string) *claim {
	for i := range c.Claims {
		if c.Claims[i].Machine == machine {
			return &c.Claims[i]
		}
	}
	return nil
}

func (c *claims) release(server string) {
	out := c.Claims[:0]
	for _, x := range c.Claims {
		if x.Server != server {
			out = append(out, x)
		}
	}
	c.Claims = out
}

// update re-reads the claims under the lock and applies f to the claim of
// server, if it still exists.
func updateClaim(dir, server string, f func(*claim)) error {
	c, err := openClaims(dir)
	if err != nil {
		return err
	}
	defer c.Close()
	cl := c.byServer(server)
	if cl == nil {
		return nil
	}
	f(cl)
	return c.save()
}
