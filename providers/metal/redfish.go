package metal

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	"github.com/stmcginnis/gofish/redfish"
)

// retryPolicy is how often and how patiently BMC calls are retried. BMCs
// are slow, single-threaded and reboot their own web servers: transient
// failures (no answer, 5xx) are retried with exponential backoff; bad
// credentials and unsupported actions are not.
type retryPolicy struct {
	Attempts int
	Backoff  time.Duration // first wait; doubled each time, capped at 8x
	Timeout  time.Duration // per HTTP request
}

var defaultRetry = retryPolicy{Attempts: 4, Backoff: 500 * time.Millisecond, Timeout: 30 * time.Second}

// bmcConn is a logged-in connection to one server's Redfish service and
// the ComputerSystem that is the server.
type bmcConn struct {
	server Server
	api    *gofish.APIClient
	sys    *redfish.ComputerSystem
	retry  retryPolicy
	log    *slog.Logger
}

// dialBMC logs in to s's BMC (a Redfish session, or basic auth when
// s.BMC.BasicAuth or the BMC has no session service) and finds its system.
func dialBMC(ctx context.Context, s Server, rp retryPolicy, log *slog.Logger) (*bmcConn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &bmcConn{server: s, retry: rp, log: log}
	pw, err := s.Password()
	if err != nil {
		return nil, c.fail("reading credentials", ErrBadCredentials, err)
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: s.BMC.Insecure}, //nolint:gosec // per-BMC opt-in for self-signed certificates
	}
	cfg := gofish.ClientConfig{
		Endpoint: strings.TrimSuffix(s.BMC.Endpoint, "/"), Username: s.BMC.Username, Password: pw,
		BasicAuth: s.BMC.BasicAuth, HTTPClient: &http.Client{Transport: tr, Timeout: rp.Timeout},
	}
	err = c.do(ctx, "logging in", func() error {
		api, err := gofish.ConnectContext(ctx, cfg)
		if err != nil && !cfg.BasicAuth && (isStatus(err, http.StatusNotFound, http.StatusMethodNotAllowed) || strings.Contains(err.Error(), "no target provided")) {
			// Quirk: no session service (some older firmware): basic auth.
			log.Warn("BMC has no Redfish session service; using basic auth", "server", s.Name)
			cfg.BasicAuth = true
			api, err = gofish.ConnectContext(ctx, cfg)
		}
		c.api = api
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := c.findSystem(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close logs out (deletes the session).
func (c *bmcConn) Close() {
	if c.api != nil {
		c.api.Logout()
	}
}

func (c *bmcConn) findSystem(ctx context.Context) error {
	var systems []*redfish.ComputerSystem
	if err := c.do(ctx, "listing systems", func() (err error) {
		systems, err = c.api.Service.Systems()
		return err
	}); err != nil {
		return err
	}
	want := c.server.BMC.System
	for _, sys := range systems {
		if want == "" && len(systems) == 1 || want != "" && (sys.ID == want || sys.ODataID == want) {
			c.sys = sys
			return nil
		}
	}
	var ids []string
	for _, sys := range systems {
		ids = append(ids, sys.ID)
	}
	if want == "" {
		return c.fail("finding the system", ErrBMC, fmt.Errorf("the BMC manages %d systems %v; name one with bmc.system", len(systems), ids))
	}
	return c.fail("finding the system", ErrBMC, fmt.Errorf("no system %q; the BMC has %v", want, ids))
}

// refresh re-reads the system.
func (c *bmcConn) refresh(ctx context.Context) error {
	return c.do(ctx, "reading the system", func() error {
		sys, err := redfish.GetComputerSystem(c.api, c.sys.ODataID)
		if err == nil {
			c.sys = sys
		}
		return err
	})
}

// PowerState is the system's power state as the BMC reports it.
func (c *bmcConn) PowerState(ctx context.Context) (string, error) {
	if err := c.refresh(ctx); err != nil {
		return "", err
	}
	return string(c.sys.PowerState), nil
}

// BootTargets is what the BMC allows as a boot override target
// (Boot.BootSourceOverrideTarget@Redfish.AllowableValues, which gofish does
// not decode); nil when the BMC does not say.
func (c *bmcConn) BootTargets(ctx context.Context) ([]string, error) {
	var doc struct {
		Boot struct {
			Targets []string `json:"BootSourceOverrideTarget@Redfish.AllowableValues"`
		}
	}
	err := c.do(ctx, "reading boot options", func() error {
		resp, err := c.api.Get(c.sys.ODataID)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&doc)
	})
	return doc.Boot.Targets, err
}

// SetNetworkBootOnce sets a one-time boot override to PXE, or to UEFI HTTP
// boot from httpURI when httpURI is set and the BMC offers UefiHttp.
func (c *bmcConn) SetNetworkBootOnce(ctx context.Context, uefi bool, httpURI string) (string, error) {
	targets, err := c.BootTargets(ctx)
	if err != nil {
		return "", err
	}
	boot := redfish.Boot{BootSourceOverrideEnabled: redfish.OnceBootSourceOverrideEnabled, BootSourceOverrideTarget: redfish.PxeBootSourceOverrideTarget}
	if httpURI != "" && slices.Contains(targets, string(redfish.UefiHTTPBootSourceOverrideTarget)) {
		boot.BootSourceOverrideTarget, boot.HTTPBootURI = redfish.UefiHTTPBootSourceOverrideTarget, httpURI
	}
	if len(targets) > 0 && !slices.Contains(targets, string(boot.BootSourceOverrideTarget)) {
		return "", c.fail("setting a one-time network boot", ErrNotSupported, fmt.Errorf("boot target %s is not among the BMC's %v", boot.BootSourceOverrideTarget, targets))
	}
	if uefi {
		boot.BootSourceOverrideMode = redfish.UEFIBootSourceOverrideMode
	} else {
		boot.BootSourceOverrideMode = redfish.LegacyBootSourceOverrideMode
	}
	err = c.do(ctx, "setting a one-time network boot", func() error { return c.sys.SetBoot(boot) })
	if err != nil && isStatus(err, http.StatusBadRequest) && strings.Contains(err.Error(), "BootSourceOverrideMode") {
		// Quirk: firmware that boots in one mode only refuses the mode.
		c.log.Warn("BMC refuses BootSourceOverrideMode; setting the override without it", "server", c.server.Name, "quirk", "no-boot-mode")
		boot.BootSourceOverrideMode = ""
		err = c.do(ctx, "setting a one-time network boot", func() error { return c.sys.SetBoot(boot) })
	}
	return string(boot.BootSourceOverrideTarget), err
}

// Reset powers the system: "on", "off" or "reset" (sdk.Power*). On when
// already on, and off when already off, do nothing.
func (c *bmcConn) Reset(ctx context.Context, action string) error {
	st, err := c.PowerState(ctx)
	if err != nil {
		return err
	}
	var rt redfish.ResetType
	switch action {
	case "on":
		if st == string(redfish.OnPowerState) {
			return nil
		}
		rt = redfish.OnResetType
	case "off":
		if st == string(redfish.OffPowerState) {
			return nil
		}
		rt = redfish.ForceOffResetType
	case "reset":
		rt = redfish.ForceRestartResetType
		if st == string(redfish.OffPowerState) {
			rt = redfish.OnResetType
		}
	default:
		return fmt.Errorf("unknown power action %q", action)
	}
	op := "power " + action + " (" + string(rt) + ")"
	if len(c.sys.SupportedResetTypes) > 0 && !slices.Contains(c.sys.SupportedResetTypes, rt) {
		if rt == redfish.ForceRestartResetType && slices.Contains(c.sys.SupportedResetTypes, redfish.PowerCycleResetType) {
			rt = redfish.PowerCycleResetType
		} else {
			return c.fail(op, ErrNotSupported, fmt.Errorf("reset type %s is not among the BMC's %v", rt, c.sys.SupportedResetTypes))
		}
	}
	return c.do(ctx, op, func() error { return c.sys.Reset(rt) })
}

// do runs f, retrying transient failures with backoff, and turns the final
// error into a *BMCError.
func (c *bmcConn) do(ctx context.Context, op string, f func() error) error {
	wait := c.retry.Backoff
	attempts := max(c.retry.Attempts, 1)
	var err error
	for i := range attempts {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err = f(); err == nil {
			return nil
		}
		kind := classify(err)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !transient(err, kind) || i == attempts-1 {
			return c.fail(op, kind, err)
		}
		c.log.Debug("BMC call failed; retrying", "server", c.server.Name, "op", op, "attempt", i+1, "wait", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(wait*2, c.retry.Backoff*8)
	}
	return c.fail(op, classify(err), err)
}

func (c *bmcConn) fail(op string, kind, err error) error {
	return &BMCError{Server: c.server.Name, Endpoint: c.server.BMC.Endpoint, Op: op, Kind: kind, Err: err}
}

// classify names a gofish or network error.
func classify(err error) error {
	var re *common.Error
	if errors.As(err, &re) {
		body := re.Code + " " + re.Message + " " + re.Error()
		switch {
		case re.HTTPReturnedStatusCode == http.StatusUnauthorized || re.HTTPReturnedStatusCode == http.StatusForbidden:
			return ErrBadCredentials
		case re.HTTPReturnedStatusCode == http.StatusMethodNotAllowed || re.HTTPReturnedStatusCode == http.StatusNotImplemented,
			strings.Contains(body, "ActionNotSupported"), strings.Contains(body, "ActionParameterNotSupported"),
			strings.Contains(body, "PropertyValueNotInList"):
			return ErrNotSupported
		}
		return ErrBMC
	}
	// gofish reports a failed collection member as text holding the status.
	if m := statusInText.FindStringSubmatch(err.Error()); m != nil {
		switch m[1] {
		case "401", "403":
			return ErrBadCredentials
		case "405", "501":
			return ErrNotSupported
		}
		return ErrBMC
	}
	var ne net.Error
	var ue *url.Error
	var oe *net.OpError
	if errors.As(err, &oe) || errors.As(err, &ne) || errors.As(err, &ue) {
		return ErrUnreachable
	}
	var te *tls.CertificateVerificationError
	if errors.As(err, &te) {
		return ErrUnreachable
	}
	if strings.Contains(err.Error(), "is not supported by this service") {
		return ErrNotSupported
	}
	return ErrBMC
}

var statusInText = regexp.MustCompile(`"error":"([1-5][0-9][0-9]): `)

// transient says whether a retry may help: no answer, or a 5xx.
func transient(err, kind error) bool {
	if errors.Is(kind, ErrUnreachable) {
		var te *tls.CertificateVerificationError
		return !errors.As(err, &te)
	}
	var re *common.Error
	if errors.As(err, &re) {
		return re.HTTPReturnedStatusCode >= 500
	}
	m := statusInText.FindStringSubmatch(err.Error())
	return m != nil && m[1][0] == '5'
}

func isStatus(err error, codes ...int) bool {
	var re *common.Error
	return errors.As(err, &re) && slices.Contains(codes, re.HTTPReturnedStatusCode)
}
