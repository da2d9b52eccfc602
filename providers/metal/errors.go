package metal

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/stmcginnis/gofish/common"
)

// Kinds of BMC failure; a *BMCError wraps one of them (errors.Is).
var (
	// ErrBadCredentials: the BMC refused the username or password (401/403).
	ErrBadCredentials = errors.New("bad BMC credentials")
	// ErrUnreachable: no answer from the BMC (refused, timed out, TLS).
	ErrUnreachable = errors.New("BMC unreachable")
	// ErrNotSupported: the BMC does not offer the action (a reset type, a
	// boot target).
	ErrNotSupported = errors.New("action not supported by the BMC")
	// ErrBMC: the BMC answered with an error k2 does not classify.
	ErrBMC = errors.New("BMC error")
	// ErrNoServer: no free server in the inventory fits a machine.
	ErrNoServer = errors.New("no free server")
)

// BMCError is a failed call to one server's BMC.
type BMCError struct {
	Server   string // inventory name
	Endpoint string
	Op       string // "powering on", "setting one-time PXE boot"...
	Kind     error  // ErrBadCredentials, ErrUnreachable...
	Err      error  // the cause, from gofish or the network
}

func (e *BMCError) Error() string {
	msg := fmt.Sprintf("server %s: BMC %s: %s: %v: %s", e.Server, e.Endpoint, e.Op, e.Kind, cause(e.Err))
	if h := hint(e.Kind); h != "" {
		msg += "; " + h
	}
	return msg
}

// Unwrap returns the kind and the cause.
func (e *BMCError) Unwrap() []error { return []error{e.Kind, e.Err} }

// cause renders a gofish error briefly: "HTTP 401: <Redfish message>".
func cause(err error) string {
	var re *common.Error
	if errors.As(err, &re) && re.HTTPReturnedStatusCode != 0 {
		msg := re.Message
		if len(re.ExtendedInfos) > 0 && re.ExtendedInfos[0].Message != "" {
			msg = re.ExtendedInfos[0].Message
		}
		if msg == "" {
			msg = http.StatusText(re.HTTPReturnedStatusCode)
		}
		return fmt.Sprintf("HTTP %d: %s", re.HTTPReturnedStatusCode, strings.TrimSpace(msg))
	}
	s := err.Error()
	if m := statusInText.FindStringSubmatch(s); m != nil {
		return "HTTP " + m[1] + ": " + http.StatusText(atoi(m[1]))
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func hint(kind error) string {
	switch {
	case errors.Is(kind, ErrBadCredentials):
		return "check bmc.username and the password its passwordEnv/passwordFile gives, and that the account may use Redfish"
	case errors.Is(kind, ErrUnreachable):
		return "check bmc.endpoint, that this host can reach the BMC network, and bmc.insecure for self-signed certificates"
	case errors.Is(kind, ErrNotSupported):
		return "this BMC cannot do it; update its firmware or set the server up by hand"
	}
	return ""
}
