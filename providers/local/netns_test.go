package local_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// TestNetnsMachines: in netns mode every machine, the control plane's too,
// runs in its own network namespace with an address on the bridge k2 made
// (the host keeps the bridge's first address), and deleting the machines
// removes the namespaces, veths and the bridge.
func TestNetnsMachines(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter not installed")
	}
	p := providertest.Connect(t, local.New)
	stateDir := t.TempDir()
	cfg, _ := json.Marshal(map[string]any{"stateDir": stateDir, "network": "netns", "runtime": "sim"})
	ctx := context.Background()
	resp, err := p.Create(ctx, &sdk.CreateRequest{RequestID: "r1", Config: cfg,
		Machines:  []sdk.MachineRequest{{Name: "cp", Role: "control-plane"}, {Name: "w1", Role: "worker"}, {Name: "w2", Role: "worker"}},
		Bootstrap: sdk.Bootstrap{Method: sdk.BootstrapExec, Command: []string{"sleep", "600"}}})
	if err != nil || resp.Diagnostics.HasErrors() {
		t.Fatal(err, resp.Diagnostics)
	}
	ids := []string{}
	addrs := map[string]string{}
	for _, m := range resp.Machines {
		ids = append(ids, m.ID)
		addrs[m.Name] = m.Addresses[0]
	}
	t.Cleanup(func() { p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids}) })
	nsPrefix, bridge := local.NetworkNames(stateDir)
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		t.Fatalf("bridge %s missing: %v", bridge, err)
	}
	if addrs["cp"] == addrs["w1"] || addrs["w1"] == addrs["w2"] || addrs["cp"] == addrs["w2"] || strings.HasSuffix(addrs["cp"], ".1") {
		t.Errorf("addresses %v: want distinct addresses from .2 (.1 is the host's)", addrs)
	}
	self, _ := os.Readlink("/proc/self/ns/net")
	for name, wantOwn := range map[string]bool{"cp": true, "w1": true, "w2": true} {
		raw, err := os.ReadFile(filepath.Join(stateDir, "machines", name, "pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.Fields(string(raw))[0]
		ns, _ := os.Readlink("/proc/" + pid + "/ns/net")
		if own := ns != self; own != wantOwn {
			t.Errorf("machine %s: own network namespace %v, want %v", name, own, wantOwn)
		}
		if wantOwn {
			out, err := exec.Command("ip", "-n", nsPrefix+name, "-4", "addr", "show", "eth0").CombinedOutput()
			if err != nil || !strings.Contains(string(out), addrs[name]+"/24") {
				t.Errorf("machine %s eth0: %v\n%s", name, err, out)
			}
			env, _ := os.ReadFile("/proc/" + pid + "/environ")
			if !strings.Contains(string(env), "K2_MACHINE_ADDRESS="+addrs[name]+"\x00") || !strings.Contains(string(env), "K2_AGENT_RUNTIME=sim\x00") {
				t.Errorf("machine %s environment lacks its address or runtime", name)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", nsPrefix+"w1", "ip", "route", "get", addrs["w2"]).CombinedOutput(); err != nil {
		t.Errorf("w1 cannot route to w2: %v\n%s", err, out)
	}
	del, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: ids})
	if err != nil || len(del.Deleted) != 3 {
		t.Fatalf("delete: %+v %v", del, err)
	}
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), nsPrefix) {
			t.Errorf("namespace %s left", e.Name())
		}
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
		t.Errorf("bridge %s left", bridge)
	}
}
