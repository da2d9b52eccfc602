// Package fakebmc is a FAKE baseboard management controller for tests: an
// in-process Redfish service (DMTF DSP0266) that answers what k2's metal
// provider and common Redfish clients ask of a server's BMC. It is not a
// BMC emulator and must never be used outside tests.
//
// It models: the service root (/redfish, /redfish/v1), the session service
// (POST .../Sessions returns X-Auth-Token and a Location; GET and DELETE of
// a session), HTTP basic auth, the Systems collection and each
// ComputerSystem (power state, model, serial, UUID, one EthernetInterface
// with the boot MAC), ComputerSystem.Reset (On, ForceOff, GracefulShutdown,
// ForceRestart, GracefulRestart, PushPowerButton, Nmi), and the boot source
// override (PATCH of Boot: target, enabled Once/Continuous/Disabled, mode
// UEFI/Legacy, HttpBootUri), a one-time override being consumed by the next
// power-on or restart, as real BMCs do. Errors carry Redfish's error body
// (error.code, message, @Message.ExtendedInfo). Hooks let a test tie power
// and boot to something real (a libvirt domain), and faults (status codes,
// delays, firmware quirks) can be injected per request path.
//
// It leaves out: TLS (tests serve it over http:// or wrap it in
// httptest.NewTLSServer), ETag/If-Match checking, account and role
// management (one user), Chassis, Managers, SerialInterfaces and virtual
// media (empty or absent), event subscriptions, tasks and asynchronous
// operations (every action completes at once), $expand/$select/$filter
// queries, BIOS settings, the $metadata CSDL and OData service documents,
// session timeouts, and every OEM extension.
package fakebmc

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// System is one computer system the fake BMC manages.
type System struct {
	ID           string // path segment, e.g. "1"
	Name         string
	Manufacturer string
	Model        string
	SerialNumber string
	UUID         string
	MAC          string // the boot NIC's MAC address
	// PowerState is "On" or "Off".
	PowerState string
	// Boot source override.
	BootTarget  string // None, Pxe, Hdd, Cd, UefiHttp, BiosSetup
	BootEnabled string // Disabled, Once, Continuous
	BootMode    string // UEFI or Legacy
	HTTPBootURI string
	// ResetTypes the system supports; empty means all the fake knows.
	ResetTypes []string
	// BootTargets allowed; empty means None, Pxe, Hdd, Cd, UefiHttp, BiosSetup.
	BootTargets []string
}

// Quirks are firmware behaviours seen on real BMCs, switched on per fake.
type Quirks struct {
	// NoBootMode: PATCH of Boot.BootSourceOverrideMode is refused with
	// 400 PropertyNotWritable (BMCs that only boot in one mode).
	NoBootMode bool
	// NoSessions: the session service is absent (404), basic auth only.
	NoSessions bool
}

// Options configure a fake BMC.
type Options struct {
	Username, Password string
	Systems            []System
	Quirks             Quirks
	// OnPower is called when a reset changes a system's power (state "On"
	// or "Off"; restart calls it with "Restart"), with the boot target in
	// effect for this boot ("Pxe", "UefiHttp", "Hdd", or "" for none).
	// An error fails the action with 500.
	OnPower func(system, state, bootTarget string) error
}

// Call is one request the fake served, for tests of the exact calls a
// client makes.
type Call struct {
	Method string
	Path   string
	Body   string `json:",omitempty"`
	Auth   string // "session", "basic" or "" (none)
}

// String renders "METHOD path body".
func (c Call) String() string {
	s := c.Method + " " + c.Path
	if c.Body != "" {
		s += " " + c.Body
	}
	return s
}

type fault struct {
	status int
	delay  time.Duration
	times  int // <0: forever
}

// BMC is a fake Redfish service; it is an http.Handler.
type BMC struct {
	mu       sync.Mutex
	opts     Options
	systems  map[string]*System
	order    []string
	sessions map[string]string // token -> session id
	nextSess int
	calls    []Call
	faults   map[string]*fault // "METHOD path" or "* path"
}

var (
	allResets  = []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PushPowerButton", "Nmi"}
	allTargets = []string{"None", "Pxe", "Hdd", "Cd", "UefiHttp", "BiosSetup"}
)

// New returns a fake BMC serving opts.Systems (a copy).
func New(opts Options) *BMC {
	b := &BMC{opts: opts, systems: map[string]*System{}, sessions: map[string]string{}, faults: map[string]*fault{}}
	for _, s := range opts.Systems {
		s := s
		if s.PowerState == "" {
			s.PowerState = "Off"
		}
		if s.BootEnabled == "" {
			s.BootEnabled = "Disabled"
		}
		if s.BootTarget == "" {
			s.BootTarget = "None"
		}
		if s.BootMode == "" {
			s.BootMode = "UEFI"
		}
		if len(s.ResetTypes) == 0 {
			s.ResetTypes = allResets
		}
		if len(s.BootTargets) == 0 {
			s.BootTargets = allTargets
		}
		b.systems[s.ID] = &s
		b.order = append(b.order, s.ID)
	}
	return b
}

// System returns a copy of system id's current state.
func (b *BMC) System(id string) (System, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.systems[id]
	if !ok {
		return System{}, false
	}
	return *s, true
}

// SetPowerState changes a system's power as if it happened on the machine
// (an OS shutting itself down).
func (b *BMC) SetPowerState(id, state string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.systems[id]; ok {
		s.PowerState = state
	}
}

// Calls returns the requests served so far, oldest first.
func (b *BMC) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// ResetCalls forgets the recorded calls.
func (b *BMC) ResetCalls() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = nil
}

// Fail makes the next times requests (times < 0: all) matching method
// ("*" for any) and path answer with status after delay; status 0 only
// delays.
func (b *BMC) Fail(method, path string, status int, delay time.Duration, times int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults[method+" "+strings.TrimSuffix(path, "/")] = &fault{status: status, delay: delay, times: times}
}

func (b *BMC) takeFault(method, path string) *fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, k := range []string{method + " " + path, "* " + path} {
		f, ok := b.faults[k]
		if !ok || f.times == 0 {
			continue
		}
		if f.times > 0 {
			f.times--
		}
		c := *f
		return &c
	}
	return nil
}

func newToken() string {
	var buf [16]byte
	_, _ = rand.Read(buf[:])
	return hex.EncodeToString(buf[:])
}

// redfishError writes a Redfish error body.
func redfishError(w http.ResponseWriter, status int, id, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code":    "Base.1.8." + id,
		"message": msg,
		"@Message.ExtendedInfo": []map[string]any{{
			"@odata.type": "#Message.v1_0_0.Message",
			"MessageId":   "Base.1.8." + id,
			"Message":     msg,
			"Severity":    "Warning",
		}},
	}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func fmtErr(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// Replace swaps the fake's options and systems (as New would make them),
// keeping its sessions, recorded calls and faults: a test can change a BMC
// behind a URL it already handed out.
func (b *BMC) Replace(opts Options) {
	n := New(opts)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.opts, b.systems, b.order = n.opts, n.systems, n.order
}
