// Package netboot is k2's network boot server for machines with nothing on
// their disks: TFTP serving iPXE, HTTP serving a per-MAC iPXE script, the
// OS's kernel and initramfs, and each machine's config at an unguessable,
// single-use URL. Every DHCP, TFTP and HTTP request is recorded per MAC as a
// boot stage with its time and bytes, so a machine that never comes up is
// reported with the last stage it reached.
//
// The boot flow:
//
//	firmware PXE ── DHCP (the site's, or k2's proxy DHCP) ──> next-server, undionly.kpxe | ipxe.efi
//	            ── TFTP ──> iPXE
//	iPXE        ── DHCP (user class "iPXE") ──> http://ADDR/boot.ipxe
//	            ── HTTP /boot.ipxe ──> chain /m/${mac:hexhyp}/boot.ipxe
//	            ── HTTP /m/MAC/boot.ipxe ──> kernel + initrd lines
//	            ── HTTP /m/MAC/kernel, /m/MAC/initrd ──> the OS
//	OS          ── HTTP /c/TOKEN ──> the machine config (once)
package netboot

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"
)

// Boot stages, in the order a machine reaches them.
const (
	StageDHCP      = "dhcp"      // proxy-DHCP answered its PXE request
	StageTFTP      = "tftp"      // iPXE fetched over TFTP
	StageScript    = "script"    // its iPXE script fetched
	StageKernel    = "kernel"    // kernel fetched
	StageInitramfs = "initramfs" // initramfs fetched
	StageConfig    = "config"    // machine config fetched
)

var stageOrder = map[string]int{StageDHCP: 1, StageTFTP: 2, StageScript: 3, StageKernel: 4, StageInitramfs: 5, StageConfig: 6}

// Machine is what one machine boots.
type Machine struct {
	Name string
	MAC  string
	// Kernel and Initramfs are files on this host, served by k2, or
	// http(s) URLs (a site's mirror) iPXE fetches them from directly; the
	// kernel and initramfs stages are then not seen here.
	Kernel, Initramfs string
	// Cmdline is the kernel command line; the server appends
	// "<ConfigParam>=<single-use URL>" when Config is set.
	Cmdline string
	// ConfigParam is the kernel parameter naming the config URL
	// (default k2.config; talos.config for Talos).
	ConfigParam string
	// Config is served once, to the first request of its URL.
	Config []byte
}

// Event is one request a machine made.
type Event struct {
	MAC    string        `json:"mac,omitempty"` // empty when not known (TFTP before any HTTP)
	Remote string        `json:"remote"`
	Stage  string        `json:"stage,omitempty"`
	Proto  string        `json:"proto"` // dhcp, tftp, http
	Path   string        `json:"path,omitempty"`
	Bytes  int64         `json:"bytes"`
	At     time.Time     `json:"at"`
	Took   time.Duration `json:"took,omitempty"`
	Err    string        `json:"err,omitempty"`
	// clientIP is the address a DHCP request says the client has (a
	// DHCP packet's source is 0.0.0.0 or a relay, not the machine).
	clientIP string
}

// Progress is what a machine has done so far.
type Progress struct {
	MAC       string               `json:"mac"`
	Stage     string               `json:"stage,omitempty"`  // last stage reached
	Stages    map[string]time.Time `json:"stages,omitempty"` // when each was served in full
	Bytes     int64                `json:"bytes"`
	Addresses []string             `json:"addresses,omitempty"`
}

// Options configure a Server.
type Options struct {
	// HTTPAddr is where the HTTP server listens (IP:port). Machines reach
	// it at URL (default http://HTTPAddr).
	HTTPAddr string
	URL      string
	// TFTPAddr is where TFTP listens (IP:69); empty: no TFTP.
	TFTPAddr string
	// IPXEDir holds the iPXE binaries served over TFTP (Debian's
	// /usr/lib/ipxe: undionly.kpxe, ipxe.efi, snponly.efi).
	IPXEDir string
	// DHCPAddr, when set, runs a proxy DHCP server there (normally
	// 0.0.0.0:67) answering only the PXE clients of the machines added;
	// PXEAddr answers PXE boot-server requests (normally 0.0.0.0:4011).
	DHCPAddr, PXEAddr string
	// DHCPInterface binds the proxy DHCP sockets to one interface
	// (broadcasts then come and go only there).
	DHCPInterface string
	// NextServer is the TFTP address given to PXE clients (default:
	// TFTPAddr's IP, which must then be a specific IPv4 address).
	NextServer string
	// EFIBootFile is what UEFI x64 PXE clients boot (default ipxe.efi;
	// snponly.efi uses the firmware's network driver).
	EFIBootFile string
	// Log receives one line per request (nil: discard).
	Log *slog.Logger
	// OnEvent is called for every request (after it is recorded).
	OnEvent func(Event)
}

// Server is a running boot server.
type Server struct {
	opts     Options
	log      *slog.Logger
	mu       sync.Mutex
	machines map[string]*entry // by MAC
	tokens   map[string]string // config token -> MAC
	ipMAC    map[string]string // remote IP -> MAC
	// ipxeServed: "IP file" of iPXE binaries served this boot.
	ipxeServed map[string]bool
	events     []Event
	httpAddr   net.Addr
	tftpAddr   net.Addr
	dhcpAddr   net.Addr
	pxeAddr    net.Addr
	nextServer net.IP
	stop       []func()
}

type entry struct {
	m        Machine
	token    string
	served   bool
	progress Progress
}

// ErrUnknownMachine is for a MAC the server does not boot.
var ErrUnknownMachine = errors.New("unknown machine")

func newToken() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// normMAC lower-cases a MAC in colon form; "" when it is not one.
func normMAC(s string) string {
	hw, err := net.ParseMAC(strings.ReplaceAll(s, "-", ":"))
	if err != nil {
		return ""
	}
	return hw.String()
}

// Add registers (or replaces) a machine to boot.
func (s *Server) Add(m Machine) error {
	mac := normMAC(m.MAC)
	if mac == "" {
		return fmt.Errorf("machine %s: %q is not a MAC address", m.Name, m.MAC)
	}
	if m.ConfigParam == "" {
		m.ConfigParam = "k2.config"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.machines[mac]; ok {
		delete(s.tokens, old.token)
	}
	// A new boot of this machine starts from the firmware again.
	for ip, m := range s.ipMAC {
		if m == mac {
			for k := range s.ipxeServed {
				if strings.HasPrefix(k, ip+" ") {
					delete(s.ipxeServed, k)
				}
			}
		}
	}
	e := &entry{m: m, progress: Progress{MAC: mac, Stages: map[string]time.Time{}}}
	if len(m.Config) > 0 {
		e.token = newToken()
		s.tokens[e.token] = mac
	}
	s.machines[mac] = e
	return nil
}

// Remove stops booting a machine.
func (s *Server) Remove(mac string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.machines[normMAC(mac)]; ok {
		delete(s.tokens, e.token)
		delete(s.machines, normMAC(mac))
	}
}

// Progress returns a machine's boot progress.
func (s *Server) Progress(mac string) (Progress, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.machines[normMAC(mac)]
	if !ok {
		return Progress{}, false
	}
	p := e.progress
	p.Stages = map[string]time.Time{}
	for k, v := range e.progress.Stages {
		p.Stages[k] = v
	}
	p.Addresses = append([]string(nil), e.progress.Addresses...)
	return p, true
}

// Events returns every request served so far, oldest first.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// HTTPAddr and TFTPAddr are the listening addresses (useful with port 0).
func (s *Server) HTTPAddr() net.Addr { return s.httpAddr }

// TFTPAddr is TFTP's listening address; nil without TFTP.
func (s *Server) TFTPAddr() net.Addr { return s.tftpAddr }

// URL is the base URL machines fetch from.
func (s *Server) URL() string {
	if s.opts.URL != "" {
		return strings.TrimSuffix(s.opts.URL, "/")
	}
	return "http://" + s.httpAddr.String()
}

// record notes one request; mac may be empty (found from the remote IP).
func (s *Server) record(ev Event) {
	s.mu.Lock()
	ip := ev.Remote
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	if ev.Proto == "dhcp" {
		ip = ev.clientIP
	}
	if ev.MAC == "" {
		ev.MAC = s.ipMAC[ip]
	} else if ip != "" {
		s.ipMAC[ip] = ev.MAC
		// Requests from this address before its MAC was known (TFTP) are
		// now known to be this machine's.
		for i := range s.events {
			if s.events[i].MAC == "" && strings.HasPrefix(s.events[i].Remote, ip+":") {
				s.events[i].MAC = ev.MAC
				s.advance(ev.MAC, s.events[i], ip)
			}
		}
	}
	s.events = append(s.events, ev)
	if ev.MAC != "" {
		s.advance(ev.MAC, ev, ip)
	}
	hook := s.opts.OnEvent
	s.mu.Unlock()
	s.log.Info("boot request", "mac", ev.MAC, "remote", ev.Remote, "proto", ev.Proto, "path", ev.Path, "stage", ev.Stage, "bytes", ev.Bytes, "took", ev.Took, "err", ev.Err)
	if hook != nil {
		hook(ev)
	}
}

// advance moves a machine's progress; s.mu is held.
func (s *Server) advance(mac string, ev Event, ip string) {
	e, ok := s.machines[mac]
	if !ok || ev.Err != "" {
		return
	}
	e.progress.Bytes += ev.Bytes
	if ip != "" && !contains(e.progress.Addresses, ip) && ev.Proto != "dhcp" {
		e.progress.Addresses = append(e.progress.Addresses, ip)
	}
	if ev.Stage == "" {
		return
	}
	if _, seen := e.progress.Stages[ev.Stage]; !seen {
		e.progress.Stages[ev.Stage] = ev.At.Add(ev.Took) // reached once served
	}
	if stageOrder[ev.Stage] > stageOrder[e.progress.Stage] {
		e.progress.Stage = ev.Stage
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Summary renders each machine's stage timings relative to its first
// request, e.g. "52:54:00:..: dhcp +0s, tftp +0.4s, ... (153.2 MB)".
func (s *Server) Summary() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for mac, e := range s.machines {
		type st struct {
			name string
			at   time.Time
		}
		var sts []st
		for k, v := range e.progress.Stages {
			sts = append(sts, st{k, v})
		}
		sort.Slice(sts, func(i, j int) bool { return sts[i].at.Before(sts[j].at) })
		var parts []string
		for _, x := range sts {
			parts = append(parts, fmt.Sprintf("%s +%.1fs", x.name, x.at.Sub(sts[0].at).Seconds()))
		}
		out = append(out, fmt.Sprintf("%s (%s): %s (%d bytes)", e.m.Name, mac, strings.Join(parts, ", "), e.progress.Bytes))
	}
	sort.Strings(out)
	return out
}
