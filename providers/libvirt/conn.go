package libvirt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/user"
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
// daemon, the ssh setup or the permissions.
func connectError(cfg *config, err error) error {
	msg := err.Error()
	_, transport, _ := strings.Cut(cfg.uri.Scheme, "+")
	hint := "check the uri setting and that libvirtd runs there"
	switch {
	case strings.Contains(msg, "known_hosts") || strings.Contains(msg, "knownhosts"):
		hint = fmt.Sprintf("k2 checks the host's ssh key against ~/.ssh/known_hosts of the user it runs as: ssh to %s once as that user to add it (or add no_verify=1 to the URI to skip the check)", cfg.uri.Hostname())
	case strings.Contains(msg, "unable to authenticate"):
		hint = fmt.Sprintf("sshd took none of k2's keys: k2 offers the ssh agent's ($SSH_AUTH_SOCK) and ~/.ssh/id_*, or the key ?keyfile=PATH names; add its public half to ~/.ssh/authorized_keys of %q on the host", sshUser(cfg.uri))
	case strings.Contains(msg, "could not read tls"):
		hint = "k2 needs cacert.pem, clientcert.pem and clientkey.pem in the directory ?pkipath=DIR names (else /etc/pki/CA/cacert.pem, /etc/pki/libvirt/clientcert.pem and /etc/pki/libvirt/private/clientkey.pem)"
	case strings.Contains(msg, "x509:"):
		hint = "libvirtd's certificate does not check out against cacert.pem: it must be signed by that CA and name the host as the URI does"
	case transport == "tls" && (strings.Contains(msg, "server verification") || strings.Contains(msg, "remote error: tls") || errors.Is(err, io.EOF) || strings.HasSuffix(msg, "EOF")):
		// libvirtd checks the client's certificate after the handshake
		// and, if it refuses it, drops the connection or says so.
		hint = "libvirtd closed the connection: most likely it refused k2's client certificate; sign clientcert.pem with the CA in libvirtd's ca_file (and check its tls_allowed_dn_list)"
	case strings.Contains(msg, "remote libvirt socket"):
		hint = "sshd let k2 in but could not reach libvirtd's socket there: start libvirtd on that host, or name its socket with ?socket=PATH"
	case errors.Is(err, os.ErrPermission) || strings.Contains(msg, "permission denied"):
		hint = "k2 may not use the socket: run as root or as a member of the group libvirt"
	case strings.Contains(msg, "connection refused") && transport != "" && transport != "unix":
		addr := net.JoinHostPort(cfg.uri.Hostname(), cmp.Or(cfg.uri.Port(), defaultPorts[transport]))
		hint = fmt.Sprintf("nothing listens at %s: ", addr)
		switch transport {
		case "tcp":
			hint += "libvirtd must run there with --listen and listen_tcp = 1 in libvirtd.conf (or virtproxyd's TCP socket enabled)"
		case "tls":
			hint += "libvirtd must run there with --listen and listen_tls = 1 (or virtproxyd's TLS socket enabled)"
		default:
			hint += "sshd must run there (port 22 unless the URI names another)"
		}
	case errors.Is(err, os.ErrNotExist) || strings.Contains(msg, "no such file") || strings.Contains(msg, "connection refused"):
		hint = "libvirtd is not running there: start it (systemctl start libvirtd, or libvirtd -d)"
	}
	return userErrorf("config.uri", "connecting to %s: %v; %s", redactURI(cfg.URI), err, hint)
}

// defaultPorts are libvirt's remote transports' ports.
var defaultPorts = map[string]string{"tcp": "16509", "tls": "16514", "ssh": "22", "libssh": "22", "libssh2": "22"}

// sshUser is the user an ssh URI logs in as: its own, or the one k2 runs as.
func sshUser(u *url.URL) string {
	if n := u.User.Username(); n != "" {
		return n
	}
	if cur, err := user.Current(); err == nil {
		return cur.Username
	}
	return "the user"
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
