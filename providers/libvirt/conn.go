package libvirt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/digitalocean/go-libvirt"

	"k2.dev/k2/providers/sdk"
)

// conn is one connection to libvirtd for the length of a call. go-libvirt's
// calls take no context: cancelling ctx closes the connection, which fails
// the call in flight.
type conn struct {
	l      *libvirt.Libvirt
	cfg    *config
	driver string // libvirt's driver name: QEMU, TEST
	stop   func() bool
	dead   bool // abandoned: a call deadlocked it (see download)
}

// connect opens the config's URI.
func connect(ctx context.Context, cfg *config) (*conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type result struct {
		l   *libvirt.Libvirt
		err error
	}
	ch := make(chan result, 1)
	go func() {
		l, err := libvirt.ConnectToURI(cfg.uri)
		ch <- result{l, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.l.Disconnect()
			}
		}()
		return nil, ctx.Err()
	}
	if r.err != nil {
		return nil, connectError(cfg, r.err)
	}
	c := &conn{l: r.l, cfg: cfg}
	c.stop = context.AfterFunc(ctx, func() { r.l.Disconnect() })
	drv, err := c.l.ConnectGetType()
	if err != nil {
		c.close()
		return nil, c.wrap(ctx, err)
	}
	c.driver = strings.ToUpper(drv)
	return c, nil
}

func (c *conn) close() {
	if c.stop() && !c.dead {
		c.l.Disconnect()
	}
}

// abandon gives up a connection go-libvirt has deadlocked: Disconnect
// would block too (it is a call). Its socket and two goroutines leak until
// the process exits.
func (c *conn) abandon() {
	c.stop()
	c.dead = true
}

// fake reports whether the connection is to the test driver, whose
// hypervisor runs nothing: it stores no volume data, hands out no DHCP
// leases and has no console.
func (c *conn) fake() bool { return c.driver == "TEST" }

// wrap returns ctx's error when the call failed because ctx ended (the
// connection was closed under it), else err.
func (c *conn) wrap(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// connectError explains a failed connection: the user fixes the URI, the
// daemon or the permissions.
func connectError(cfg *config, err error) error {
	msg := err.Error()
	hint := "check the uri setting and that libvirtd runs there"
	switch {
	case errors.Is(err, os.ErrPermission) || strings.Contains(msg, "permission denied"):
		hint = "k2 may not use the socket: run as root or as a member of the group libvirt"
	case errors.Is(err, os.ErrNotExist) || strings.Contains(msg, "no such file") || strings.Contains(msg, "connection refused"):
		hint = "libvirtd is not running there: start it (systemctl start libvirtd, or libvirtd -d)"
	case strings.Contains(msg, "ssh:") || strings.Contains(msg, "knownhosts"):
		hint = "k2 connects with Go's ssh client: it uses the ssh agent or ~/.ssh/id_* (or ?keyfile=) and checks ~/.ssh/known_hosts (ssh to the host once to add it)"
	}
	return userErrorf("config.uri", "connecting to %s: %v; %s", redactURI(cfg.URI), err, hint)
}

// redactURI hides a password in a URI.
func redactURI(s string) string {
	if i := strings.Index(s, "://"); i >= 0 {
		if j := strings.Index(s[i+3:], "@"); j >= 0 {
			if k := strings.Index(s[i+3:i+3+j], ":"); k >= 0 {
				return s[:i+3+k] + ":xxxxx" + s[i+3+j:]
			}
		}
	}
	return s
}

// code is the libvirt error number of err, or -1.
func code(err error) libvirt.ErrorNumber {
	var e libvirt.Error
	if errors.As(err, &e) {
		return libvirt.ErrorNumber(e.Code)
	}
	return -1
}

func isCode(err error, codes ...libvirt.ErrorNumber) bool {
	c := code(err)
	for _, want := range codes {
		if c == want {
			return true
		}
	}
	return false
}

// notSupported reports whether the driver does not offer a call.
func notSupported(err error) bool { return isCode(err, libvirt.ErrNoSupport) }

// userError is a problem with the config or request a user must fix.
type userError struct {
	Path, Msg string
}

func (e *userError) Error() string { return e.Msg }

func userErrorf(path, format string, args ...any) error {
	return &userError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// diagnose turns a user's problem into a diagnostic at its path (or at
// path); it reports whether err was one.
func diagnose(ds *sdk.Diagnostics, path string, err error) bool {
	var ue *userError
	if !errors.As(err, &ue) {
		if isCode(err, libvirt.ErrAccessDenied, libvirt.ErrAuthFailed) {
			ds.Errorf("config.uri", "libvirt refused: %v; connect as a user allowed to manage domains, networks and storage (root, or the group libvirt)", err)
			return true
		}
		return false
	}
	p := ue.Path
	if p == "" {
		p = path
	}
	ds.Errorf(p, "%s", ue.Msg)
	return true
}
