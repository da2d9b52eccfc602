package netboot_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"k2.dev/k2/internal/netboot"
)

// pxeClient sends DHCP packets built with insomniacslk's dhcpv4 (a DHCP
// library nobody here wrote) from a loopback socket, as a PXE ROM would.
type pxeClient struct {
	t    *testing.T
	conn *net.UDPConn
}

func newPXEClient(t *testing.T) *pxeClient {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &pxeClient{t: t, conn: c}
}

// send sends m to addr and returns the answer, or nil when none comes
// within wait.
func (c *pxeClient) send(addr net.Addr, m *dhcpv4.DHCPv4, wait time.Duration) *dhcpv4.DHCPv4 {
	c.t.Helper()
	if _, err := c.conn.WriteTo(m.ToBytes(), addr); err != nil {
		c.t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			return nil
		}
		resp, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			c.t.Fatalf("the answer is not DHCP: %v", err)
		}
		if resp.TransactionID == m.TransactionID {
			return resp
		}
	}
}

// answer is what a PXE client reads from a proxy offer.
type answer struct {
	Type        string
	YourIP      string
	NextServer  string
	File        string
	VendorClass string
	ServerID    string
	Vendor43    []byte
	GUID        []byte
	MAC         string
}

func answerOf(m *dhcpv4.DHCPv4) answer {
	return answer{
		Type: m.MessageType().String(), YourIP: m.YourIPAddr.String(), NextServer: m.ServerIPAddr.String(),
		File: m.BootFileName, VendorClass: m.ClassIdentifier(), ServerID: m.ServerIdentifier().String(),
		Vendor43: m.GetOneOption(dhcpv4.OptionVendorSpecificInformation), GUID: m.GetOneOption(dhcpv4.OptionClientMachineIdentifier),
		MAC: m.ClientHWAddr.String(),
	}
}

// TestProxyDHCP: the proxy answers the PXE clients of the machines it
// boots — BIOS, UEFI x64, iPXE — with exactly the boot options and no
// address, on port 67 and the PXE boot-server port, and nobody else.
func TestProxyDHCP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ipxe.efi"), []byte("an EFI iPXE"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := netboot.Start(ctx, netboot.Options{
		HTTPAddr: "127.0.0.1:0", TFTPAddr: "127.0.0.1:0", IPXEDir: dir,
		DHCPAddr: "127.0.0.1:0", PXEAddr: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	macs := map[string]net.HardwareAddr{}
	for i, name := range []string{"bios", "efi", "arm", "plain"} {
		mac := net.HardwareAddr{0x52, 0x54, 0, 0x16, 0, byte(i + 1)}
		macs[name] = mac
		if err := srv.Add(netboot.Machine{Name: name, MAC: mac.String(), Kernel: "k", Initramfs: "i"}); err != nil {
			t.Fatal(err)
		}
	}
	guid := append([]byte{0}, []byte("0123456789abcdef")...) // type 0 + a 16-byte UUID
	pxe := func(mac net.HardwareAddr, arch iana.Arch, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.NewDiscovery(mac, append([]dhcpv4.Modifier{
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
			dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
			dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, guid),
		}, mods...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	c := newPXEClient(t)
	dhcp, port4011 := srv.DHCPAddr(), srv.PXEAddr()
	vendor43 := []byte{6, 1, 8, 255}

	tests := []struct {
		name string
		to   net.Addr
		req  *dhcpv4.DHCPv4
		want *answer // nil: no answer
	}{
		{"BIOS PXE ROM", dhcp, pxe(macs["bios"], iana.INTEL_X86PC),
			&answer{"OFFER", "0.0.0.0", "127.0.0.1", "undionly.kpxe", "PXEClient", "127.0.0.1", vendor43, guid, macs["bios"].String()}},
		{"UEFI x64 PXE", dhcp, pxe(macs["efi"], iana.EFI_X86_64),
			&answer{"OFFER", "0.0.0.0", "127.0.0.1", "ipxe.efi", "PXEClient", "127.0.0.1", vendor43, guid, macs["efi"].String()}},
		{"UEFI x64 PXE (EFI BC)", dhcp, pxe(macs["efi"], iana.EFI_BC),
			&answer{"OFFER", "0.0.0.0", "127.0.0.1", "ipxe.efi", "PXEClient", "127.0.0.1", vendor43, guid, macs["efi"].String()}},
		// iPXE sends option 77 as the bare string "iPXE": it gets the
		// script's URL, not iPXE again.
		{"iPXE", dhcp, pxe(macs["bios"], iana.INTEL_X86PC, dhcpv4.WithUserClass("iPXE", false)),
			&answer{"OFFER", "0.0.0.0", "127.0.0.1", srv.URL() + "/boot.ipxe", "PXEClient", "127.0.0.1", vendor43, guid, macs["bios"].String()}},
		{"PXE boot-server REQUEST on 4011", port4011, pxe(macs["efi"], iana.EFI_X86_64,
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(10, 0, 0, 7))),
			&answer{"ACK", "0.0.0.0", "127.0.0.1", "ipxe.efi", "PXEClient", "127.0.0.1", vendor43, guid, macs["efi"].String()}},
		{"REQUEST naming the proxy", dhcp, pxe(macs["bios"], iana.INTEL_X86PC,
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 1)))),
			&answer{"ACK", "0.0.0.0", "127.0.0.1", "undionly.kpxe", "PXEClient", "127.0.0.1", vendor43, guid, macs["bios"].String()}},
		{"REQUEST to the site's DHCP server", dhcp, pxe(macs["bios"], iana.INTEL_X86PC,
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(127, 0, 0, 9)))), nil},
		{"not a PXE client", dhcp, func() *dhcpv4.DHCPv4 {
			m, _ := dhcpv4.NewDiscovery(macs["plain"], dhcpv4.WithOption(dhcpv4.OptHostName("laptop")))
			return m
		}(), nil},
		{"a PXE client k2 does not boot", dhcp, pxe(net.HardwareAddr{0x52, 0x54, 0, 0x16, 0, 0x99}, iana.INTEL_X86PC), nil},
		{"an architecture without iPXE here", dhcp, pxe(macs["arm"], iana.EFI_ARM64), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wait := 3 * time.Second
			if tt.want == nil {
				wait = 500 * time.Millisecond
			}
			resp := c.send(tt.to, tt.req, wait)
			if tt.want == nil {
				if resp != nil {
					t.Fatalf("answered %s; want no answer", resp.Summary())
				}
				return
			}
			if resp == nil {
				t.Fatal("no answer")
			}
			if diff := cmp.Diff(*tt.want, answerOf(resp)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if resp.OpCode != dhcpv4.OpcodeBootReply {
				t.Errorf("opcode %v", resp.OpCode)
			}
			for _, o := range []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionDomainNameServer} {
				if resp.Options.Has(o) {
					t.Errorf("proxy answer carries %v: addresses are the site's DHCP's", o)
				}
			}
		})
	}

	// Each machine answered has reached the dhcp stage; the one whose
	// architecture has no iPXE has an error event and no stage.
	for name, want := range map[string]string{"bios": netboot.StageDHCP, "efi": netboot.StageDHCP, "arm": "", "plain": ""} {
		p := waitProgress(t, srv, macs[name].String(), func(p netboot.Progress) bool { return p.Stage == want })
		if p.Stage != want {
			t.Errorf("%s: stage %q, want %q", name, p.Stage, want)
		}
		if _, ok := p.Stages[netboot.StageDHCP]; ok != (want != "") {
			t.Errorf("%s: stages %v", name, p.Stages)
		}
	}
	var armErr string
	for _, ev := range srv.Events() {
		if ev.MAC == macs["arm"].String() {
			armErr = ev.Err
		}
		if ev.Proto == "dhcp" && ev.MAC == macs["plain"].String() {
			t.Errorf("a non-PXE client was recorded: %+v", ev)
		}
	}
	if !strings.Contains(armErr, "EFI ARM64") || !strings.Contains(armErr, "no iPXE binary") {
		t.Errorf("arm64 client's event error %q", armErr)
	}
	p, _ := srv.Progress(macs["efi"].String())
	if len(p.Addresses) != 0 {
		t.Errorf("DHCP made addresses %v (only HTTP/TFTP requests do)", p.Addresses)
	}

	// A 4011 REQUEST carries the client's address: its TFTP requests from
	// there are the machine's before any HTTP request names its MAC.
	req := pxe(macs["efi"], iana.EFI_X86_64, dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(net.IPv4(127, 0, 0, 1)))
	if c.send(port4011, req, 3*time.Second) == nil {
		t.Fatal("no answer on 4011")
	}
	tc, err := tftp.NewClient(srv.TFTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	wt, err := tc.Receive("ipxe.efi", "octet")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wt.WriteTo(io.Discard); err != nil {
		t.Fatal(err)
	}
	p = waitProgress(t, srv, macs["efi"].String(), func(p netboot.Progress) bool { return p.Stage == netboot.StageTFTP })
	if p.Stage != netboot.StageTFTP {
		t.Errorf("efi after its TFTP fetch: stage %q, want tftp (events %+v)", p.Stage, srv.Events())
	}
}

// TestProxyDHCPNeedsNextServer: without an address to give as next-server
// the proxy refuses to start, saying what to set.
func TestProxyDHCPNeedsNextServer(t *testing.T) {
	_, err := netboot.Start(context.Background(), netboot.Options{HTTPAddr: "127.0.0.1:0", TFTPAddr: "0.0.0.0:0", DHCPAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "set tftpAddress") {
		t.Fatalf("err %v, want one naming tftpAddress", err)
	}
}
