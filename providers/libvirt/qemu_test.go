package libvirt_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"k2.dev/k2/internal/libvirttest"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/libvirt"
	"k2.dev/k2/providers/providertest"
	"k2.dev/k2/providers/sdk"
)

// TestQEMU makes a real VM on a private libvirtd's qemu driver (TCG:
// domain type qemu) booting a busybox stand-in for k2 OS, and checks what
// only a real hypervisor shows: the VM reads the cidata volume's user-data
// with the Linux vfat driver, gets its address by DHCP from the NAT
// network k2 made (Create returns it), its serial console is in the log
// volume (Console, followed), power off/on and reset reboot it, a retried
// Create finds it, and Delete leaves no domain, volume or network (virsh
// checks). It runs with K2_E2E=1 (~75 s).
func TestQEMU(t *testing.T) {
	if os.Getenv("K2_E2E") == "" {
		t.Skip("boots a VM under emulation; set K2_E2E=1 to run")
	}
	d := libvirttest.Start(t)
	img := libvirttest.BusyboxImage(t)
	cfg := config(t, map[string]any{"uri": d.URI("qemu"), "image": img, "poll_interval": "200ms",
		"shutdown_timeout": "1s", "address_timeout": "3m"})
	p := providertest.Connect(t, libvirt.New)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	userData := fmt.Sprintf("apiVersion: machine.k2.dev/v1\nnonce: %d\n", time.Now().UnixNano())
	req := workerRequest("qemu-1", "vm", "vm-worker-0", cfg)
	req.Machines[0].MemoryBytes = 256 << 20
	req.Bootstrap.UserData = []byte(userData)
	var progress []string
	req.OnProgress = func(pr sdk.Progress) { progress = append(progress, pr.Message) }
	t0 := time.Now()
	resp := create(t, p, req)
	m := resp.Machines[0]
	t.Logf("Create (define, upload %s, boot, DHCP lease): %s", img, time.Since(t0).Round(100*time.Millisecond))
	t.Logf("progress:\n%s", strings.Join(progress, "\n"))
	if len(m.Addresses) != 1 || !strings.HasPrefix(m.Addresses[0], "192.168.") || m.State != sdk.StateRunning {
		t.Fatalf("machine: %+v", m)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "uploading image initramfs") {
		t.Errorf("no upload progress:\n%s", strings.Join(progress, "\n"))
	}

	console := func(want string, n int) string {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			var out testutil.SyncBuffer
			if err := p.Console(ctx, &sdk.ConsoleRequest{Config: cfg, MachineID: m.ID, Output: &out}); err != nil {
				t.Fatalf("Console: %v", err)
			}
			// The serial line ends lines with \r\n.
			if s := strings.ReplaceAll(out.String(), "\r", ""); strings.Count(s, want) >= n {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("the console has %q %d times, want %d:\n%s", want, strings.Count(out.String(), want), n, tail(out.String()))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	out := console(libvirttest.MarkAlive, 1)
	if !strings.Contains(out, libvirttest.MarkCIDataBegin+"\n"+userData+"\n"+libvirttest.MarkCIDataEnd) {
		t.Errorf("the VM did not read the user-data from the cidata volume:\n%s", tail(out))
	}
	if !strings.Contains(out, libvirttest.MarkAddress+m.Addresses[0]+"/") {
		t.Errorf("the VM's own address is not %s:\n%s", m.Addresses[0], tail(out))
	}

	// Followed: what the VM prints from now on arrives.
	fctx, fcancel := context.WithTimeout(ctx, 4*time.Second)
	var followed testutil.SyncBuffer
	// k2 ends a followed console by cancelling: the call returns ctx's error.
	if err := p.Console(fctx, &sdk.ConsoleRequest{Config: cfg, MachineID: m.ID, Output: &followed, Follow: true}); err != nil && fctx.Err() == nil {
		t.Errorf("Console (follow): %v", err)
	}
	t.Logf("followed")
	fcancel()
	before := strings.Count(out, libvirttest.MarkAlive)
	if got := strings.Count(followed.String(), libvirttest.MarkAlive); got <= before {
		t.Errorf("following the console for 4s: %d alive lines, %d before", got, before)
	}

	// A retried Create finds the machine.
	again := create(t, p, workerRequest("qemu-1", "vm", "vm-worker-0", cfg))
	if again.Machines[0].ID != m.ID {
		t.Errorf("a retried Create returned %s, first %s", again.Machines[0].ID, m.ID)
	}
	if doms, _ := d.Virsh("qemu", "list", "--all", "--name"); strings.Count(doms, "vm-worker") != 1 {
		t.Errorf("domains: %q", doms)
	}

	power := func(action, want string) {
		t.Helper()
		r, err := p.Power(ctx, &sdk.PowerRequest{Config: cfg, MachineID: m.ID, Action: action})
		if err != nil || r.Diagnostics.HasErrors() || r.State != want {
			t.Fatalf("Power %s: %v %v state %q, want %q", action, err, r.Diagnostics, r.State, want)
		}
	}
	t.Logf("retried")
	power(sdk.PowerOff, sdk.StateStopped)
	t.Logf("off")
	if st, _ := d.Virsh("qemu", "domstate", "vm-worker-0"); strings.TrimSpace(st) != "shut off" {
		t.Errorf("virsh domstate after power off: %q", st)
	}
	power(sdk.PowerOn, sdk.StateRunning)
	t.Logf("on")
	console(libvirttest.MarkCIDataEnd, 2) // booted again; the log keeps the first boot
	t.Logf("booted again")
	power(sdk.PowerReset, sdk.StateRunning)
	console(libvirttest.MarkCIDataEnd, 3)

	dr, err := p.Delete(ctx, &sdk.DeleteRequest{Config: cfg, MachineIDs: []string{m.ID}})
	if err != nil || dr.Diagnostics.HasErrors() {
		t.Fatalf("Delete: %v %v", err, dr.Diagnostics)
	}
	for _, c := range [][]string{{"list", "--all", "--name"}, {"net-list", "--all", "--name"}, {"vol-list", "default"}} {
		out, err := d.Virsh("qemu", c...)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("virsh %s after Delete: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
