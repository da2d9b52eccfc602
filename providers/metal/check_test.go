package metal

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCheckInventory(t *testing.T) {
	l := newLab(t, 2, func(i int, s *Server) {
		if i == 1 {
			s.BMC.PasswordFile, s.BMC.PasswordEnv = "", "K2_TEST_BMC_PASSWORD"
		}
	})
	t.Setenv("K2_TEST_BMC_PASSWORD", "wrong")
	l.bmcs["s0"].SetPowerState("1", "On")
	rep, err := CheckInventory(context.Background(), l.inventory, nil)
	if !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("err %v, want ErrCheckFailed", err)
	}
	yes := true
	want0 := ServerReport{Name: "s0", Endpoint: l.urls["s0"], OK: true, PowerState: "On", Manufacturer: "k2", Model: "FakeServer",
		SerialNumber: "SN-0000", BootTargets: []string{"None", "Pxe", "Hdd", "Cd", "UefiHttp", "BiosSetup"}, BootMode: "UEFI",
		MAC: "52:54:00:00:00:00", MACSeen: &yes}
	if diff := cmp.Diff(want0, rep.Servers[0]); diff != "" {
		t.Errorf("s0 (-want +got):\n%s", diff)
	}
	if s1 := rep.Servers[1]; s1.OK || s1.Kind != "bad-credentials" || rep.Failed != 1 {
		t.Errorf("s1: %+v, failed %d", s1, rep.Failed)
	}
	// Checking changes nothing.
	for _, c := range l.bmcs["s0"].Calls() {
		if c.Method == "PATCH" || (c.Method == "POST" && c.Path != "/redfish/v1/SessionService/Sessions") {
			t.Errorf("check sent %s", c)
		}
	}
}
