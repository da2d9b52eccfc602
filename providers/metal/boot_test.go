package metal

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/sdk"
)

// fakeFirmware plays a machine's network boot when its fake BMC powers it
// on: what iPXE would fetch (the generic script, the per-MAC script, kernel,
// initrd) and then, unless stopAt names an earlier file, what k2 init would
// (the config URL from the kernel line).
func fakeFirmware(t *testing.T, bootURL, mac, stopAt string, got chan<- string) func(id, state, target string) error {
	return func(_, state, target string) error {
		if state == "Off" || target != "Pxe" {
			return nil
		}
		go func() {
			fetch := func(url string) string {
				resp, err := http.Get(url)
				if err != nil {
					t.Errorf("firmware: %v", err)
					return ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return string(b)
			}
			chain := fetch(bootURL + "/boot.ipxe")
			script := fetch(strings.ReplaceAll(strings.Fields(chain)[2], "${mac:hexhyp}", strings.ReplaceAll(mac, ":", "-")))
			var kernelLine []string
			for _, l := range strings.Split(script, "\n") {
				if strings.HasPrefix(l, "kernel ") {
					kernelLine = strings.Fields(l)
				}
			}
			fetch(kernelLine[1])
			if stopAt == "kernel" {
				got <- ""
				return
			}
			fetch(strings.Replace(kernelLine[1], "/kernel", "/initrd", 1))
			for _, f := range kernelLine {
				if v, ok := strings.CutPrefix(f, "k2.config="); ok {
					got <- fetch(v)
				}
			}
		}()
		return nil
	}
}

// TestCreateServesBoot: Create powers the server on and waits while it
// network-boots from k2's boot server, reporting each stage, and returns
// once the machine fetched its config (its UserData, verbatim); a machine
// that stops early fails with the last stage it reached.
func TestCreateServesBoot(t *testing.T) {
	for _, tc := range []struct {
		name, stopAt string
	}{{"Boots", ""}, {"StopsAfterKernel", "kernel"}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 1, nil)
			addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
			got := make(chan string, 1)
			l.bmcs["s0"].Replace(fakebmc.Options{Username: "admin", Password: "s3cret",
				Systems: []fakebmc.System{{ID: "1", Name: "s0", MAC: "52:54:00:00:00:00"}},
				OnPower: fakeFirmware(t, "http://"+addr, "52:54:00:00:00:00", tc.stopAt, got)})
			img := t.TempDir()
			writeFile(t, img+"/vmlinuz", strings.Repeat("k", 5000))
			writeFile(t, img+"/initramfs.cpio.gz", strings.Repeat("i", 9000))
			timeout := "20s"
			if tc.stopAt != "" {
				timeout = "2s"
			}
			cfg := l.config(t, map[string]any{"bootAddress": addr, "image": img, "bootTimeout": timeout})
			var mu sync.Mutex
			var progress []string
			userData := []byte("apiVersion: machine.k2.dev/v1\nkind: MachineConfig\nrole: worker\ntoken: secret\n")
			resp, err := newTestProvider().Create(context.Background(), &sdk.CreateRequest{
				RequestID: "r1", Config: cfg, Machines: []sdk.MachineRequest{worker("w0")},
				Bootstrap:  sdk.Bootstrap{Method: sdk.BootstrapNetworkBoot, UserData: userData},
				OnProgress: func(p sdk.Progress) { mu.Lock(); progress = append(progress, p.Message); mu.Unlock() },
			})
			if err != nil || resp.Diagnostics.HasErrors() {
				t.Fatalf("Create: %v %v", err, resp.Diagnostics.Err())
			}
			m := resp.Machines[0]
			t.Logf("%s: %s\n%s", m.State, m.Message, strings.Join(progress, "\n"))
			if tc.stopAt == "" {
				if c := <-got; c != string(userData) {
					t.Errorf("the machine got config %q", c)
				}
				if m.State != sdk.StateRunning || len(m.Addresses) != 1 || m.Addresses[0] != "127.0.0.1" {
					t.Errorf("machine %+v", m)
				}
				all := strings.Join(progress, "\n")
				for _, st := range []string{"boot stage script", "boot stage kernel", "boot stage initramfs", "boot stage config"} {
					if !strings.Contains(all, st) {
						t.Errorf("no progress %q", st)
					}
				}
				// The stages are kept with the claim, for k2 status.
				list, _ := newTestProvider().List(context.Background(), &sdk.ListRequest{Config: cfg})
				if msg := list.Machines[0].Message; !strings.Contains(msg, "config") {
					t.Errorf("List message %q lacks the boot stages", msg)
				}
				return
			}
			if m.State != sdk.StateFailed || !strings.Contains(m.Message, "last boot stage reached: kernel") {
				t.Errorf("machine that stopped after the kernel: %s %q", m.State, m.Message)
			}
		})
	}
}
