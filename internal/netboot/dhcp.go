package netboot

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Proxy DHCP (the PXE specification's "ProxyDHCP"): the site's DHCP server
// keeps handing out addresses; k2 answers, beside it, only the PXE clients
// of the machines it is booting, with where to boot from and nothing else
// (no address, no lease). Firmware merges the two answers. Everyone else —
// machines that are not PXE clients, PXE clients k2 is not booting — gets
// no answer from k2 at all.
//
// The answer, by client:
//
//	BIOS PXE ROM (option 93 = 0)          next-server, file undionly.kpxe
//	UEFI x64 PXE (option 93 = 7 or 9)     next-server, file EFIBootFile (ipxe.efi)
//	iPXE (option 77 user class "iPXE")    file http://…/boot.ipxe (so it does not load iPXE again)
//
// On port 67 a DISCOVER gets an OFFER and a REQUEST naming k2 as server
// an ACK; on the PXE boot-server port (4011) a REQUEST gets an ACK.

// PXE vendor class prefix (option 60) every PXE client sends.
const pxeVendorClass = "PXEClient"

// pxeVendorOptions is option 43 of a proxy offer: PXE_DISCOVERY_CONTROL
// (tag 6) = 8, "boot the file named here, no boot-server discovery",
// then End. Some PXE ROMs ignore a proxy offer without it.
var pxeVendorOptions = []byte{6, 1, 8, 255}

// startDHCP listens for proxy DHCP on opts.DHCPAddr (and PXE boot-server
// requests on opts.PXEAddr).
func (s *Server) startDHCP() error {
	next := s.opts.NextServer
	if next == "" {
		next, _, _ = net.SplitHostPort(s.opts.TFTPAddr)
	}
	ip := net.ParseIP(next).To4()
	if ip == nil || ip.IsUnspecified() {
		return fmt.Errorf("boot server: proxy DHCP needs the TFTP server's address to give PXE clients (next-server): %q is not one; set tftpAddress to this host's IPv4 address on the machines' network, e.g. 10.0.0.1:69", next)
	}
	s.nextServer = ip
	if s.opts.EFIBootFile == "" {
		s.opts.EFIBootFile = "ipxe.efi"
	}
	for _, a := range []struct {
		addr string
		pxe  bool
	}{{s.opts.DHCPAddr, false}, {s.opts.PXEAddr, true}} {
		if a.addr == "" {
			continue
		}
		ua, err := net.ResolveUDPAddr("udp4", a.addr)
		if err != nil {
			return fmt.Errorf("boot server: proxy DHCP address %q: %w", a.addr, err)
		}
		conn, err := server4.NewIPv4UDPConn(s.opts.DHCPInterface, ua)
		if err != nil {
			where := a.addr
			if s.opts.DHCPInterface != "" {
				where += " on " + s.opts.DHCPInterface
			}
			return fmt.Errorf("boot server: listening for proxy DHCP on %s: %w (binding port 67 needs root or CAP_NET_BIND_SERVICE)", where, err)
		}
		pxe := a.pxe
		srv, err := server4.NewServer("", nil, func(c net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
			s.serveDHCP(c, peer, m, pxe)
		}, server4.WithConn(conn))
		if err != nil {
			_ = conn.Close()
			return err
		}
		if pxe {
			s.pxeAddr = conn.LocalAddr()
		} else {
			s.dhcpAddr = conn.LocalAddr()
		}
		go func() { _ = srv.Serve() }()
		s.stop = append(s.stop, func() { _ = srv.Close() })
	}
	return nil
}

// DHCPAddr is the proxy DHCP listening address; nil without it.
func (s *Server) DHCPAddr() net.Addr { return s.dhcpAddr }

// PXEAddr is the PXE boot-server (4011) listening address; nil without it.
func (s *Server) PXEAddr() net.Addr { return s.pxeAddr }

// serveDHCP answers one DHCP packet if it is a PXE client k2 boots.
func (s *Server) serveDHCP(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, bootServerPort bool) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || !strings.HasPrefix(req.ClassIdentifier(), pxeVendorClass) {
		return // not a PXE client: the site's DHCP server's business alone
	}
	mac := normMAC(req.ClientHWAddr.String())
	var reply dhcpv4.MessageType
	switch t := req.MessageType(); {
	case t == dhcpv4.MessageTypeDiscover && !bootServerPort:
		reply = dhcpv4.MessageTypeOffer
	case t == dhcpv4.MessageTypeRequest && (bootServerPort || s.nextServer.Equal(req.ServerIdentifier())):
		reply = dhcpv4.MessageTypeAck
	default:
		return // a REQUEST to the site's server, a RELEASE, …
	}
	s.mu.Lock()
	_, known := s.machines[mac]
	s.mu.Unlock()
	if !known {
		s.log.Debug("proxy DHCP: not a machine this server boots; no answer", "mac", mac, "type", req.MessageType())
		return
	}
	ev := Event{MAC: mac, Remote: peer.String(), Proto: "dhcp", At: time.Now()}
	file, why := s.bootFile(req)
	if file == "" {
		ev.Path, ev.Err = req.MessageType().String(), why
		s.record(ev)
		return
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(reply),
		dhcpv4.WithServerIP(s.nextServer),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.nextServer)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(pxeVendorClass)),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, pxeVendorOptions),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	resp, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		ev.Err = err.Error()
		s.record(ev)
		return
	}
	resp.BootFileName = file
	// No YourIPAddr: the address is the site's DHCP server's to give.
	b := resp.ToBytes()
	dst := replyAddr(req, peer)
	n, err := conn.WriteTo(b, dst)
	ev.Path = fmt.Sprintf("%s → %s %s", req.MessageType(), reply, file)
	ev.Bytes, ev.Took = int64(n), time.Since(ev.At)
	if err != nil {
		ev.Err = err.Error()
	} else {
		ev.Stage = StageDHCP
	}
	if ci := req.ClientIPAddr.To4(); ci != nil && !ci.IsUnspecified() {
		ev.clientIP = ci.String() // its own address: its TFTP requests come from it
	}
	s.record(ev)
}

// bootFile is what a PXE client boots; "" and why when k2 has nothing for
// its architecture.
func (s *Server) bootFile(req *dhcpv4.DHCPv4) (string, string) {
	for _, uc := range req.UserClass() {
		if uc == "iPXE" {
			return s.URL() + "/boot.ipxe", ""
		}
	}
	if raw := req.Options.Get(dhcpv4.OptionUserClassInformation); bytes.Equal(raw, []byte("iPXE")) {
		return s.URL() + "/boot.ipxe", ""
	}
	archs := req.ClientArch()
	if len(archs) == 0 {
		return "undionly.kpxe", "" // PXE 2.1 ROMs that predate option 93 are BIOS
	}
	switch archs[0] {
	case iana.INTEL_X86PC:
		return "undionly.kpxe", ""
	case iana.EFI_X86_64, iana.EFI_BC:
		return s.opts.EFIBootFile, ""
	}
	return "", fmt.Sprintf("client architecture %s (option 93) has no iPXE binary here: serve it from the site's DHCP", archs[0])
}

// replyAddr is where a DHCP answer goes (RFC 2131 4.1): through the relay
// agent, to the client's address when it has one, else broadcast.
func replyAddr(req *dhcpv4.DHCPv4, peer net.Addr) net.Addr {
	if gi := req.GatewayIPAddr.To4(); gi != nil && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi, Port: dhcpv4.ServerPort}
	}
	up, ok := peer.(*net.UDPAddr)
	if ok && up.IP.To4() != nil && !up.IP.IsUnspecified() && !up.IP.Equal(net.IPv4bcast) {
		return up // the client's own address and port (4011 requests, tests)
	}
	if ci := req.ClientIPAddr.To4(); ci != nil && !ci.IsUnspecified() {
		return &net.UDPAddr{IP: ci, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}
