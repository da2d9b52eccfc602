package fakebmc_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/fakebmc"
)

// debianPython is Debian's interpreter, which sees python3-sushy and
// redfishtool whatever python3 comes first on PATH.
const debianPython = "/usr/bin/python3"

func newFake(t *testing.T) (*fakebmc.BMC, *httptest.Server) {
	t.Helper()
	var powered []string
	b := fakebmc.New(fakebmc.Options{
		Username: "admin", Password: "s3cret",
		Systems: []fakebmc.System{
			{ID: "1", Name: "rack1-u1", Manufacturer: "k2", Model: "FakeServer 1U", SerialNumber: "SN-0001", UUID: "00000000-0000-0000-0000-000000000001", MAC: "52:54:00:12:34:56"},
			{ID: "2", Name: "rack1-u2", Manufacturer: "k2", Model: "FakeServer 2U", SerialNumber: "SN-0002", UUID: "00000000-0000-0000-0000-000000000002", MAC: "52:54:00:12:34:57", PowerState: "On"},
		},
		OnPower: func(id, state, target string) error {
			powered = append(powered, id+":"+state+":"+target)
			return nil
		},
	})
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return b, srv
}

// need skips without a tool nobody here wrote; CI installs them, and there a
// missing one fails.
func need(t *testing.T, args ...string) {
	t.Helper()
	if err := exec.Command(args[0], args[1:]...).Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is missing in CI (.ci/run installs it): %v", args[0], err)
		}
		t.Skipf("%s not usable (apt-get install redfishtool python3-sushy): %v", strings.Join(args, " "), err)
	}
}

// TestSushy drives the fake with python3-sushy, OpenStack Ironic's Redfish
// library: sessions and basic auth, listing systems, one-time PXE boot,
// power on and off.
func TestSushy(t *testing.T) {
	need(t, debianPython, "-c", "import sushy")
	for _, kind := range []string{"session", "basic"} {
		t.Run(kind, func(t *testing.T) {
			b, srv := newFake(t)
			out, err := exec.Command(debianPython, "testdata/sushy_check.py", srv.URL+"/redfish/v1", "admin", "s3cret", kind).CombinedOutput()
			if err != nil {
				t.Fatalf("sushy: %v\n%s", err, out)
			}
			var got map[string]any
			if err := json.Unmarshal(out[strings.LastIndexByte(strings.TrimSpace(string(out)), '\n')+1:], &got); err != nil {
				t.Fatalf("sushy output: %v\n%s", err, out)
			}
			want := map[string]any{
				"systems": []any{
					map[string]any{"id": "1", "power": "Off", "serial": "SN-0001", "name": "rack1-u1", "uuid": "00000000-0000-0000-0000-000000000001"},
					map[string]any{"id": "2", "power": "On", "serial": "SN-0002", "name": "rack1-u2", "uuid": "00000000-0000-0000-0000-000000000002"},
				},
				"allowedResets": []any{"ForceOff", "ForceRestart", "GracefulRestart", "GracefulShutdown", "Nmi", "On", "PushPowerButton"},
				"bootAfterSet":  map[string]any{"target": "Pxe", "enabled": "Once"},
				"powerAfterOn":  "On",
				"bootAfterOn":   "Disabled",
				"powerAfterOff": "Off",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("what sushy saw (-want +got):\n%s", diff)
			}
			var auths []string
			for _, c := range b.Calls() {
				if c.Path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset" {
					auths = append(auths, c.Auth)
				}
			}
			if diff := cmp.Diff([]string{kind, kind}, auths); diff != "" {
				t.Errorf("auth of sushy's reset calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRedfishtool drives the fake with DMTF's redfishtool (Debian's
// package): list systems, one-time PXE boot, power on and off, with basic
// auth and with a session.
func TestRedfishtool(t *testing.T) {
	need(t, "redfishtool", "-h")
	for _, auth := range []string{"Basic", "Session"} {
		t.Run(auth, func(t *testing.T) {
			b, srv := newFake(t)
			rft := func(args ...string) string {
				t.Helper()
				base := []string{"-r", strings.TrimPrefix(srv.URL, "http://"), "-S", "Never", "-u", "admin", "-p", "s3cret", "-A", auth}
				out, err := exec.Command("redfishtool", append(base, args...)...).CombinedOutput()
				if err != nil {
					t.Fatalf("redfishtool %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				return string(out)
			}
			list := rft("Systems", "list")
			for _, want := range []string{"/redfish/v1/Systems/1", "/redfish/v1/Systems/2"} {
				if !strings.Contains(list, want) {
					t.Errorf("Systems list does not show %s:\n%s", want, list)
				}
			}
			rft("Systems", "-I", "1", "setBootOverride", "Once", "Pxe")
			if s, _ := b.System("1"); s.BootTarget != "Pxe" || s.BootEnabled != "Once" {
				t.Errorf("after setBootOverride Once Pxe: target %q enabled %q", s.BootTarget, s.BootEnabled)
			}
			rft("Systems", "-I", "1", "reset", "On")
			if s, _ := b.System("1"); s.PowerState != "On" || s.BootEnabled != "Disabled" {
				t.Errorf("after reset On: power %q, override %q (want On, consumed)", s.PowerState, s.BootEnabled)
			}
			rft("Systems", "-I", "1", "reset", "ForceOff")
			if s, _ := b.System("1"); s.PowerState != "Off" {
				t.Errorf("after reset ForceOff: power %q", s.PowerState)
			}
			get := rft("Systems", "-I", "2", "get")
			if !strings.Contains(get, `"SerialNumber": "SN-0002"`) {
				t.Errorf("Systems get does not show the serial:\n%s", get)
			}
		})
	}
}
