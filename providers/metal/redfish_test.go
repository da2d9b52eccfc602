package metal

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/providers/sdk"
)

func create(t *testing.T, p *Provider, cfg sdk.Config, reqID, env string, ms ...sdk.MachineRequest) *sdk.CreateResponse {
	t.Helper()
	for i := range ms {
		if ms[i].Labels == nil {
			ms[i].Labels = map[string]string{sdk.LabelEnvironment: env}
		}
	}
	resp, err := p.Create(context.Background(), &sdk.CreateRequest{RequestID: reqID, Config: cfg, Machines: ms,
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapNetworkBoot}})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return resp
}

func worker(name string) sdk.MachineRequest {
	return sdk.MachineRequest{Name: name, Role: "worker", Pool: "worker", Arch: "amd64"}
}

// TestRedfishCalls pins the exact requests k2 sends a BMC for Create (log
// in, find the system, read its boot options, one-time PXE boot, power on,
// log out), Power off and Delete.
func TestRedfishCalls(t *testing.T) {
	l := newLab(t, 1, nil)
	p := newTestProvider()
	cfg := l.config(t, nil)
	b := l.bmcs["s0"]
	resp := create(t, p, cfg, "r1", "dev", worker("w0"))
	if resp.Diagnostics.HasErrors() {
		t.Fatal(resp.Diagnostics.Err())
	}
	login := []string{
		"GET /redfish/v1",
		"POST /redfish/v1/SessionService/Sessions",
		"GET /redfish/v1/Systems",
		"GET /redfish/v1/Systems/1",
	}
	want := append(append([]string{}, login...),
		"GET /redfish/v1/Systems/1",
		`PATCH /redfish/v1/Systems/1 {"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideMode":"UEFI","BootSourceOverrideTarget":"Pxe"}}`,
		"GET /redfish/v1/Systems/1",
		`POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset {"ResetType":"On"}`,
		"DELETE /redfish/v1/SessionService/Sessions/1",
	)
	if diff := cmp.Diff(want, calls(b)); diff != "" {
		t.Errorf("Create's Redfish calls (-want +got):\n%s", diff)
	}
	if s, _ := b.System("1"); s.PowerState != "On" || s.BootEnabled != "Disabled" {
		t.Errorf("after Create: power %s, override %s; want On and consumed", s.PowerState, s.BootEnabled)
	}
	for _, c := range b.Calls() {
		if c.Path != "/redfish/v1" && c.Path != "/redfish/v1/SessionService/Sessions" && c.Auth != "session" {
			t.Errorf("%s %s sent without the session token (auth %q)", c.Method, c.Path, c.Auth)
		}
	}

	b.ResetCalls()
	ctx := context.Background()
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"metal-s0"}}); err != nil {
		t.Fatal(err)
	}
	want = append(append([]string{}, login...),
		"GET /redfish/v1/Systems/1",
		`POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset {"ResetType":"ForceOff"}`,
		"DELETE /redfish/v1/SessionService/Sessions/2",
	)
	if diff := cmp.Diff(want, calls(b)); diff != "" {
		t.Errorf("Delete's Redfish calls (-want +got):\n%s", diff)
	}
	if s, _ := b.System("1"); s.PowerState != "Off" {
		t.Errorf("after Delete: power %s, want Off", s.PowerState)
	}
}

// TestRestartWhenOn: a server that is already on is restarted so that the
// one-time override takes effect.
func TestRestartWhenOn(t *testing.T) {
	l := newLab(t, 1, nil)
	l.bmcs["s0"].SetPowerState("1", "On")
	p := newTestProvider()
	if resp := create(t, p, l.config(t, nil), "r1", "dev", worker("w0")); resp.Diagnostics.HasErrors() {
		t.Fatal(resp.Diagnostics.Err())
	}
	got := calls(l.bmcs["s0"])
	if !contains(got, `POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset {"ResetType":"ForceRestart"}`) {
		t.Errorf("no ForceRestart of a server that was on:\n%s", strings.Join(got, "\n"))
	}
}

func calls(b *fakebmc.BMC) []string {
	var out []string
	for _, c := range b.Calls() {
		out = append(out, c.String())
	}
	return out
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestBMCErrors checks each failure a BMC can give: the named error, the
// server and endpoint in the message, and how many tries k2 made.
func TestBMCErrors(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "http://" + addr
	}
	cases := []struct {
		name     string
		opts     func(o *fakebmc.Options)
		edit     func(s *Server)
		setup    func(b *fakebmc.BMC)
		kind     error
		contains string
		tries    func(b *fakebmc.BMC) int // requests of the failing call, checked against want
		want     int
	}{
		{name: "BadPassword", opts: func(o *fakebmc.Options) { o.Password = "other" }, kind: ErrBadCredentials, contains: "logging in"},
		{name: "BadPasswordBasicAuth", opts: func(o *fakebmc.Options) { o.Password = "other" }, edit: func(s *Server) { s.BMC.BasicAuth = true },
			kind: ErrBadCredentials, contains: "listing systems"},
		{name: "PasswordEnvUnset", edit: func(s *Server) { s.BMC.PasswordFile, s.BMC.PasswordEnv = "", "K2_TEST_NO_SUCH_VAR" },
			kind: ErrBadCredentials, contains: "environment variable K2_TEST_NO_SUCH_VAR is not set"},
		{name: "Unreachable", edit: func(s *Server) { s.BMC.Endpoint = closed() }, kind: ErrUnreachable, contains: "connection refused"},
		{name: "NoPXE", opts: func(o *fakebmc.Options) { o.Systems[0].BootTargets = []string{"None", "Hdd"} },
			kind: ErrNotSupported, contains: "boot target Pxe is not among the BMC's [None Hdd]"},
		{name: "NoResetOn", opts: func(o *fakebmc.Options) { o.Systems[0].ResetTypes = []string{"ForceOff"} },
			kind: ErrNotSupported, contains: "reset type On is not among the BMC's [ForceOff]"},
		{name: "ServerErrorForever", setup: func(b *fakebmc.BMC) { b.Fail("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", 503, 0, -1) },
			kind: ErrBMC, contains: "503",
			tries: func(b *fakebmc.BMC) int { return count(b, "POST /redfish/v1/Systems/1/Actions/ComputerSystem.Reset") }, want: 3},
		{name: "BadCredentialsNotRetried", opts: func(o *fakebmc.Options) { o.Password = "other" }, kind: ErrBadCredentials,
			tries: func(b *fakebmc.BMC) int { return count(b, "POST /redfish/v1/SessionService/Sessions") }, want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bmc *fakebmc.BMC
			l := newLabWith(t, tc.opts, tc.edit)
			bmc = l.bmcs["s0"]
			if tc.setup != nil {
				tc.setup(bmc)
			}
			p := newTestProvider()
			start := time.Now()
			resp := create(t, p, l.config(t, nil), "r1", "dev", worker("w0"))
			if !resp.Diagnostics.HasErrors() {
				t.Fatal("Create succeeded")
			}
			err := resp.Diagnostics.Err()
			t.Logf("%s (%s)", err, time.Since(start).Round(time.Millisecond))
			if len(resp.Diagnostics) != 1 || resp.Diagnostics[0].Path != "machines[0]" {
				t.Errorf("diagnostics %v, want one on machines[0]", resp.Diagnostics)
			}
			msg := resp.Diagnostics[0].Summary
			if !strings.Contains(msg, "server s0: BMC ") || !strings.Contains(msg, tc.kind.Error()) || !strings.Contains(msg, tc.contains) {
				t.Errorf("message %q lacks the server, the kind %q or %q", msg, tc.kind, tc.contains)
			}
			if tc.tries != nil {
				if got := tc.tries(bmc); got != tc.want {
					t.Errorf("%d tries, want %d", got, tc.want)
				}
			}
			// The claim is kept: a retry after fixing the BMC finds it.
			l2, _ := p.List(context.Background(), &sdk.ListRequest{Config: l.config(t, nil)})
			if len(l2.Machines) != 1 || l2.Machines[0].ID != "metal-s0" {
				t.Errorf("after a failed boot List shows %v, want the claim on s0", l2.Machines)
			}
		})
	}
}

// TestClassify checks the error kinds straight from dialBMC, so callers can
// branch on them with errors.Is.
func TestClassify(t *testing.T) {
	l := newLabWith(t, func(o *fakebmc.Options) { o.Password = "other" }, nil)
	s, _ := mustInventory(t, l).Server("s0")
	_, err := dialBMC(context.Background(), s, fastRetry, nil)
	var be *BMCError
	if !errors.As(err, &be) || !errors.Is(err, ErrBadCredentials) || be.Server != "s0" {
		t.Fatalf("got %v, want a *BMCError of s0 wrapping ErrBadCredentials", err)
	}
}

// TestTransientRetried: two 503s then success is a success after 3 tries.
func TestTransientRetried(t *testing.T) {
	l := newLab(t, 1, nil)
	b := l.bmcs["s0"]
	b.Fail("PATCH", "/redfish/v1/Systems/1", http.StatusServiceUnavailable, 0, 2)
	resp := create(t, newTestProvider(), l.config(t, nil), "r1", "dev", worker("w0"))
	if resp.Diagnostics.HasErrors() {
		t.Fatal(resp.Diagnostics.Err())
	}
	if n := count(b, "PATCH /redfish/v1/Systems/1"); n != 3 {
		t.Errorf("%d PATCHes, want 3 (two 503s, then success)", n)
	}
}

// TestQuirks: firmware that refuses BootSourceOverrideMode gets the
// override without it; firmware without a session service gets basic auth.
func TestQuirks(t *testing.T) {
	t.Run("NoBootMode", func(t *testing.T) {
		l := newLabWith(t, func(o *fakebmc.Options) { o.Quirks.NoBootMode = true }, nil)
		resp := create(t, newTestProvider(), l.config(t, nil), "r1", "dev", worker("w0"))
		if resp.Diagnostics.HasErrors() {
			t.Fatal(resp.Diagnostics.Err())
		}
		got := calls(l.bmcs["s0"])
		if !contains(got, `PATCH /redfish/v1/Systems/1 {"Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"}}`) {
			t.Errorf("no PATCH without the mode:\n%s", strings.Join(got, "\n"))
		}
		if s, _ := l.bmcs["s0"].System("1"); s.PowerState != "On" {
			t.Errorf("power %s", s.PowerState)
		}
	})
	t.Run("NoSessions", func(t *testing.T) {
		l := newLabWith(t, func(o *fakebmc.Options) { o.Quirks.NoSessions = true }, nil)
		resp := create(t, newTestProvider(), l.config(t, nil), "r1", "dev", worker("w0"))
		if resp.Diagnostics.HasErrors() {
			t.Fatal(resp.Diagnostics.Err())
		}
		for _, c := range l.bmcs["s0"].Calls() {
			if c.Method == "POST" && strings.Contains(c.Path, "Reset") && c.Auth != "basic" {
				t.Errorf("reset sent with auth %q, want basic", c.Auth)
			}
		}
	})
}

func count(b *fakebmc.BMC, prefix string) int {
	n := 0
	for _, c := range calls(b) {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func newLabWith(t *testing.T, opts func(o *fakebmc.Options), edit func(s *Server)) *lab {
	t.Helper()
	l := newLab(t, 1, func(_ int, s *Server) {
		if edit != nil {
			edit(s)
		}
	})
	if opts != nil {
		// Rebuild s0's BMC with the changed options behind the same URL.
		o := fakebmc.Options{Username: "admin", Password: "s3cret", Systems: []fakebmc.System{
			{ID: "1", Name: "s0", Manufacturer: "k2", Model: "FakeServer", SerialNumber: "SN-0000", MAC: "52:54:00:00:00:00"}}}
		opts(&o)
		l.bmcs["s0"].Replace(o)
	}
	return l
}

func mustInventory(t *testing.T, l *lab) *Inventory {
	t.Helper()
	inv, err := LoadInventory(l.inventory)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}
