package netboot

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// iPXE binaries served over TFTP: BIOS PXE ROMs load undionly.kpxe, UEFI
// firmware ipxe.efi or snponly.efi.
var tftpFiles = map[string]bool{"undionly.kpxe": true, "undionly.kkpxe": true, "ipxe.efi": true, "snponly.efi": true, "ipxe.pxe": true}

func (s *Server) startTFTP() error {
	srv := tftp.NewServer(s.tftpRead, nil)
	srv.SetTimeout(5 * time.Second)
	// Every transfer from the listening port: NATs (qemu's user network,
	// firewalls) pass the replies of the flow they saw.
	srv.EnableSinglePort()
	conn, err := net.ListenPacket("udp4", s.opts.TFTPAddr)
	if err != nil {
		return fmt.Errorf("boot server: listening for TFTP on %s: %w", s.opts.TFTPAddr, err)
	}
	s.tftpAddr = conn.LocalAddr()
	go func() { _ = srv.Serve(conn) }()
	// In single-port mode the library leaves the socket to its owner:
	// closed here, so the next boot server can listen on the address.
	s.stop = append(s.stop, func() { srv.Shutdown(); _ = conn.Close() })
	return nil
}

func (s *Server) tftpRead(name string, rf io.ReaderFrom) error {
	start := time.Now()
	ev := Event{Proto: "tftp", Path: name, At: start, Stage: StageTFTP}
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		a := ot.RemoteAddr()
		ev.Remote = a.String()
	}
	base := filepath.Base(filepath.Clean("/" + name))
	if !tftpFiles[base] || s.opts.IPXEDir == "" {
		ev.Err = "not served"
		s.record(ev)
		return fmt.Errorf("%s: not served here", name)
	}
	ip := ""
	if h, _, err := net.SplitHostPort(ev.Remote); err == nil {
		ip = h
	}
	s.mu.Lock()
	again := s.ipxeServed[ip+" "+base]
	s.ipxeServed[ip+" "+base] = true
	s.mu.Unlock()
	if again {
		// The same address asking for the same iPXE binary again in one
		// boot is that iPXE itself, given the same filename by a DHCP
		// server that cannot tell it from the firmware (libvirt's dnsmasq
		// without user-class matching): it gets a script chaining to
		// boot.ipxe instead, which iPXE runs, so it does not load itself
		// in a loop.
		body := "#!ipxe\nchain " + s.URL() + "/boot.ipxe\n"
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(int64(len(body)))
		}
		n, err := rf.ReadFrom(strings.NewReader(body))
		ev.Path, ev.Bytes, ev.Took, ev.Stage = name+" (again: chain script)", n, time.Since(start), ""
		if err != nil {
			ev.Err = err.Error()
		}
		s.record(ev)
		return err
	}
	f, err := os.Open(filepath.Join(s.opts.IPXEDir, base))
	if err != nil {
		ev.Err = err.Error()
		s.record(ev)
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(st.Size())
		}
	}
	n, err := rf.ReadFrom(f)
	ev.Bytes, ev.Took = n, time.Since(start)
	if err != nil {
		ev.Err = err.Error()
	}
	s.record(ev)
	return err
}
