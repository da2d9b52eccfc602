package metal

import (
	"context"
	"strings"
	"testing"

	"k2.dev/k2/providers/sdk"
)

// TestClaimsAcrossEnvironments: two environments never hold one server;
// hints steer placement; Delete powers off and releases, after which the
// other environment can take the server.
func TestClaimsAcrossEnvironments(t *testing.T) {
	l := newLab(t, 2, func(i int, s *Server) {
		if i == 1 {
			s.Role = "control-plane"
		}
	})
	p := newTestProvider()
	cfg := l.config(t, nil)
	ctx := context.Background()

	cp := sdk.MachineRequest{Name: "prod-cp-0", Role: "control-plane", Pool: "control-plane", Arch: "amd64"}
	resp := create(t, p, cfg, "prod-1", "prod", cp, worker("prod-w-0"))
	if resp.Diagnostics.HasErrors() {
		t.Fatal(resp.Diagnostics.Err())
	}
	got := map[string]string{}
	for _, m := range resp.Machines {
		got[m.Name] = m.ID
	}
	if got["prod-cp-0"] != "metal-s1" || got["prod-w-0"] != "metal-s0" {
		t.Errorf("placement %v: want the control plane on s1 (its hint) and the worker on s0", got)
	}

	// Another environment finds nothing free, and says who holds what.
	resp = create(t, p, cfg, "dev-1", "dev", worker("dev-w-0"))
	if !resp.Diagnostics.HasErrors() {
		t.Fatal("dev took a server prod holds")
	}
	msg := resp.Diagnostics.Err().Error()
	for _, want := range []string{"no free server", "s0 by prod/prod-w-0"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	// A worker never lands on a control-plane-hinted server.
	if strings.Contains(msg, "s1 by") {
		t.Errorf("message %q counts s1 (hinted control-plane) as fitting a worker", msg)
	}

	// Destroying prod powers s0 off and releases it; dev gets it.
	if _, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"metal-s0", "metal-s1"}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"s0", "s1"} {
		if s, _ := l.bmcs[n].System("1"); s.PowerState != "Off" {
			t.Errorf("%s is %s after Delete, want Off", n, s.PowerState)
		}
	}
	resp = create(t, p, cfg, "dev-1", "dev", worker("dev-w-0"))
	if resp.Diagnostics.HasErrors() || resp.Machines[0].ID != "metal-s0" {
		t.Fatalf("dev after prod's release: %v %v", resp.Machines, resp.Diagnostics.Err())
	}
}

// TestDeleteKeepsClaimWhenBMCFails: a server that cannot be powered off
// stays claimed (nothing is lost), and a later Delete finishes the job.
func TestDeleteKeepsClaimWhenBMCFails(t *testing.T) {
	l := newLab(t, 1, nil)
	p := newTestProvider()
	cfg := l.config(t, nil)
	ctx := context.Background()
	if resp := create(t, p, cfg, "r", "prod", worker("w")); resp.Diagnostics.HasErrors() {
		t.Fatal(resp.Diagnostics.Err())
	}
	l.bmcs["s0"].Fail("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", 500, 0, -1)
	del, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"metal-s0"}})
	if err != nil {
		t.Fatal(err)
	}
	if !del.Diagnostics.HasErrors() || len(del.Deleted) != 0 {
		t.Fatalf("Delete with a failing BMC: deleted %v, diagnostics %v", del.Deleted, del.Diagnostics)
	}
	if !strings.Contains(del.Diagnostics.Err().Error(), "stays claimed by prod/w") {
		t.Errorf("message: %v", del.Diagnostics.Err())
	}
	l.bmcs["s0"].Fail("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", 0, 0, 0)
	del, err = p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{"metal-s0"}})
	if err != nil || del.Diagnostics.HasErrors() || len(del.Deleted) != 1 {
		t.Fatalf("second Delete: %v %v %v", del.Deleted, del.Diagnostics, err)
	}
	list, _ := p.List(ctx, &sdk.ListRequest{Config: cfg})
	if len(list.Machines) != 0 {
		t.Errorf("claims left: %v", list.Machines)
	}
}
