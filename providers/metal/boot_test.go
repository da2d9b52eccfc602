package metal

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"k2.dev/k2/internal/fakebmc"
	"k2.dev/k2/internal/testutil"
	"k2.dev/k2/providers/sdk"
)

// fakeFirmware plays a machine's network boot when its fake BMC powers it
// on: with dhcpAddr, the PXE ROM's and then iPXE's proxy DHCP requests
// (dhcpv4 packets from loopback); what iPXE would fetch (the generic
// script, the per-MAC script, kernel, initrd) and then, unless stopAt names
// an earlier step, what k2 init would (the config URL from the kernel line).
func fakeFirmware(t *testing.T, bootURL, dhcpAddr, mac, stopAt string, got chan<- string) func(id, state, target string) error {
	return func(_, state, target string) error {
		if state == "Off" || target != "Pxe" {
			return nil
		}
		go func() {
			if dhcpAddr != "" {
				hw, _ := net.ParseMAC(mac)
				rom := proxyDHCP(t, dhcpAddr, hw)
				if rom == nil || rom.BootFileName != "undionly.kpxe" || rom.ServerIPAddr.String() != "127.0.0.1" {
					t.Errorf("PXE ROM's proxy DHCP answer: %v", rom)
				}
				if stopAt == "dhcp" {
					got <- ""
					return
				}
				ipxe := proxyDHCP(t, dhcpAddr, hw, dhcpv4.WithUserClass("iPXE", false))
				if ipxe == nil || ipxe.BootFileName != bootURL+"/boot.ipxe" {
					t.Errorf("iPXE's proxy DHCP answer: %v", ipxe)
				}
			}
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

// proxyDHCP sends a PXE client's DISCOVER to addr and returns the answer
// (nil: none within 5 s).
func proxyDHCP(t *testing.T, addr string, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Error(err)
		return nil
	}
	defer c.Close()
	m, _ := dhcpv4.NewDiscovery(mac, append([]dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
	}, mods...)...)
	ua, _ := net.ResolveUDPAddr("udp4", addr)
	if _, err := c.WriteTo(m.ToBytes(), ua); err != nil {
		t.Error(err)
		return nil
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return nil
	}
	resp, _ := dhcpv4.FromBytes(buf[:n])
	return resp
}

// TestCreateServesBoot: Create powers the server on and waits while it
// network-boots from k2's boot server, reporting each stage, and returns
// once the machine fetched its config (its UserData, verbatim); a machine
// that stops early fails with the last stage it reached.
func TestCreateServesBoot(t *testing.T) {
	for _, tc := range []struct {
		name, stopAt string
		proxyDHCP    bool
	}{{"Boots", "", false}, {"StopsAfterKernel", "kernel", false}, {"ProxyDHCP", "", true}, {"StopsAfterProxyDHCP", "dhcp", true}} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 1, nil)
			addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
			extra := map[string]any{}
			dhcpAddr := ""
			if tc.proxyDHCP {
				dhcpAddr = fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
				extra = map[string]any{"proxyDHCP": true, "dhcpAddress": dhcpAddr, "tftpAddress": fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))}
			}
			got := make(chan string, 1)
			l.bmcs["s0"].Replace(fakebmc.Options{Username: "admin", Password: "s3cret",
				Systems: []fakebmc.System{{ID: "1", Name: "s0", MAC: "52:54:00:00:00:00"}},
				OnPower: fakeFirmware(t, "http://"+addr, dhcpAddr, "52:54:00:00:00:00", tc.stopAt, got)})
			img := t.TempDir()
			writeFile(t, img+"/vmlinuz", strings.Repeat("k", 5000))
			writeFile(t, img+"/initramfs.cpio.gz", strings.Repeat("i", 9000))
			timeout := "20s"
			if tc.stopAt != "" {
				timeout = "2s"
			}
			extra["bootAddress"], extra["image"], extra["bootTimeout"] = addr, img, timeout
			cfg := l.config(t, extra)
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
				if tc.proxyDHCP && !strings.Contains(all, "boot stage dhcp after") {
					t.Errorf("no progress \"boot stage dhcp\"")
				}
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
			if m.State != sdk.StateFailed || !strings.Contains(m.Message, "last boot stage reached: "+tc.stopAt) {
				t.Errorf("machine that stopped after %s: %s %q", tc.stopAt, m.State, m.Message)
			}
		})
	}
}
