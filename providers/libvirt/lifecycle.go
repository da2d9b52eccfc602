package libvirt

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"

	"k2.dev/k2/providers/sdk"
)

// session loads the config and connects: what List, Delete, Power and
// Console need first.
func session(ctx context.Context, raw sdk.Config) (*conn, sdk.Diagnostics, error) {
	cfg, ds := load(raw)
	if ds.HasErrors() {
		return nil, ds, nil
	}
	c, err := connect(ctx, cfg)
	if err != nil {
		if ctx.Err() == nil && diagnose(&ds, "config.uri", err) {
			return nil, ds, nil
		}
		return nil, ds, err
	}
	return c, ds, nil
}

// k2Domain is a domain k2 made, with what its XML says.
type k2Domain struct {
	ref  libvirt.Domain
	xml  *domainXML
	meta *machineMeta
}

// lookup returns the domain of machine id (a UUID), nil if none or not
// one k2 made.
func (c *conn) lookup(ctx context.Context, id string) (*k2Domain, error) {
	u, ok := parseUUID(id)
	if !ok {
		return nil, nil // never a domain
	}
	dom, err := c.l.DomainLookupByUUID(u)
	if isCode(err, libvirt.ErrNoDomain) {
		return nil, nil
	}
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	return c.inspect(ctx, dom)
}

// inspect reads a domain's XML; nil if k2 did not make it (or it is gone).
func (c *conn) inspect(ctx context.Context, dom libvirt.Domain) (*k2Domain, error) {
	x, err := c.l.DomainGetXMLDesc(dom, libvirt.DomainXMLInactive)
	if isCode(err, libvirt.ErrNoDomain) {
		return nil, nil
	}
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	d, err := parseDomain(x)
	if err != nil {
		return nil, err
	}
	if d.meta() == nil {
		return nil, nil
	}
	return &k2Domain{ref: dom, xml: d, meta: d.meta()}, nil
}

// domains lists the domains k2 made.
func (c *conn) domains(ctx context.Context) ([]*k2Domain, error) {
	doms, _, err := c.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	var out []*k2Domain
	for _, dom := range doms {
		d, err := c.inspect(ctx, dom)
		if err != nil {
			return nil, err
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// machine describes a domain as an sdk.Machine; with addresses, its IPv4
// addresses from its network's DHCP leases.
func (c *conn) machine(ctx context.Context, dom libvirt.Domain, addresses bool) (*sdk.Machine, error) {
	d, err := c.inspect(ctx, dom)
	if err != nil {
		return nil, err
	}
	if d == nil {
		return nil, fmt.Errorf("domain %s vanished", dom.Name)
	}
	return c.describe(ctx, d, addresses)
}

func (c *conn) describe(ctx context.Context, d *k2Domain, addresses bool) (*sdk.Machine, error) {
	state, reason, err := c.l.DomainGetState(d.ref, 0)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	m := &sdk.Machine{
		ID: formatUUID(d.ref.UUID), Name: d.meta.Machine, RequestID: d.meta.RequestID, Role: d.meta.Role,
		Pool: d.meta.MachinePool, Arch: d.meta.Arch, CPU: int32(d.xml.VCPU), MemoryBytes: d.xml.Memory.bytes(),
		Labels: d.meta.labels(),
	}
	switch libvirt.DomainState(state) {
	case libvirt.DomainRunning, libvirt.DomainBlocked:
		m.State = sdk.StateRunning
	case libvirt.DomainNostate:
		m.State = sdk.StatePending
	case libvirt.DomainCrashed:
		m.State = sdk.StateFailed
	default:
		m.State = sdk.StateStopped
	}
	m.Message = fmt.Sprintf("%s domain %s %s (reason %d) on network %s", d.xml.Type, d.ref.Name, stateName(state), reason, d.meta.Network)
	m.Labels["k2.dev/libvirt-domain"] = d.ref.Name
	if addresses && m.State == sdk.StateRunning {
		m.Addresses, err = c.addresses(ctx, d.ref, !d.meta.NetworkMine)
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// addresses are a running domain's IPv4 addresses from its network's DHCP
// leases; on a network that is not k2's (whose DHCP may not be libvirt's),
// else from the host's ARP table.
func (c *conn) addresses(ctx context.Context, dom libvirt.Domain, arp bool) ([]string, error) {
	var out []string
	srcs := []libvirt.DomainInterfaceAddressesSource{libvirt.DomainInterfaceAddressesSrcLease}
	if arp {
		srcs = append(srcs, libvirt.DomainInterfaceAddressesSrcArp)
	}
	for _, src := range srcs {
		ifs, err := c.l.DomainInterfaceAddresses(dom, uint32(src), 0)
		if err != nil {
			// The ARP table is a best effort (a host's netlink may not
			// offer it); leases are what k2's own networks have.
			if ctx.Err() == nil && (src == libvirt.DomainInterfaceAddressesSrcArp || notSupported(err) ||
				isCode(err, libvirt.ErrOperationInvalid, libvirt.ErrArgumentUnsupported)) {
				continue
			}
			return nil, c.wrap(ctx, err)
		}
		for _, i := range ifs {
			for _, a := range i.Addrs {
				if a.Type == int32(libvirt.IPAddrTypeIpv4) {
					out = append(out, a.Addr)
				}
			}
		}
		if len(out) > 0 {
			break
		}
	}
	return out, nil
}

func stateName(s int32) string {
	switch libvirt.DomainState(s) {
	case libvirt.DomainRunning:
		return "running"
	case libvirt.DomainBlocked:
		return "blocked"
	case libvirt.DomainPaused:
		return "paused"
	case libvirt.DomainShutdown:
		return "shutting down"
	case libvirt.DomainShutoff:
		return "shut off"
	case libvirt.DomainCrashed:
		return "crashed"
	case libvirt.DomainPmsuspended:
		return "suspended"
	}
	return "in no state"
}

// List returns the machines k2 made on the config's libvirtd, found
// by their metadata.
func (p *Provider) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	c, ds, err := session(ctx, req.Config)
	if c == nil {
		return &sdk.ListResponse{Diagnostics: ds}, err
	}
	defer c.close()
	doms, err := c.domains(ctx)
	if err != nil {
		return nil, err
	}
	var out []sdk.Machine
	for _, d := range doms {
		if req.RequestID != "" && d.meta.RequestID != req.RequestID {
			continue
		}
		m, err := c.describe(ctx, d, true)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return &sdk.ListResponse{Machines: out, Diagnostics: ds}, nil
}

// Delete removes machines: domain, volumes, and the network when no
// machine is left on it.
func (p *Provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	c, ds, err := session(ctx, req.Config)
	if c == nil {
		return &sdk.DeleteResponse{Diagnostics: ds}, err
	}
	defer c.close()
	envs := map[string]bool{}
	var deleted []string
	for i, id := range req.MachineIDs {
		d, err := c.lookup(ctx, id)
		if err != nil {
			return nil, err
		}
		if d == nil {
			deleted = append(deleted, id) // gone, or never a machine k2 made
			continue
		}
		if err := c.deleteDomain(ctx, d); err != nil {
			if diagnose(&ds, fmt.Sprintf("machineIDs[%d]", i), err) {
				continue
			}
			return nil, err
		}
		envs[d.meta.Environment] = true
		deleted = append(deleted, id)
	}
	// The networks of the environments touched, and any network the
	// request made (a Create that died before its domain was defined).
	owned, err := c.ownedNetworks(ctx)
	if err != nil {
		return nil, err
	}
	for name, nm := range owned {
		if envs[nm.Environment] || (req.RequestID != "" && nm.RequestID == req.RequestID) {
			if err := c.gc(ctx, name, nm.Environment); err != nil {
				return nil, err
			}
		}
	}
	if len(envs) > 0 || req.RequestID != "" {
		if err := c.deleteUnusedImages(ctx); err != nil {
			return nil, err
		}
	}
	return &sdk.DeleteResponse{Deleted: deleted, Diagnostics: ds}, nil
}

// deleteDomain powers a domain off, deletes its volumes, then undefines
// it: a Delete cut short leaves the domain, which still lists what is left.
func (c *conn) deleteDomain(ctx context.Context, d *k2Domain) error {
	if err := c.l.DomainDestroy(d.ref); err != nil && !isCode(err, libvirt.ErrOperationInvalid, libvirt.ErrNoDomain) {
		return c.wrap(ctx, fmt.Errorf("stopping domain %s: %w", d.ref.Name, err))
	}
	p, err := c.l.StoragePoolLookupByName(d.meta.StoragePool)
	switch {
	case isCode(err, libvirt.ErrNoStoragePool):
		// The pool went, and its volumes with it.
	case err != nil:
		return c.wrap(ctx, err)
	default:
		// virtlogd rotates a long console log into .0, .1…: volumes too
		// once the pool is refreshed.
		if err := c.l.StoragePoolRefresh(p, 0); err != nil && !notSupported(err) {
			return c.wrap(ctx, err)
		}
		for _, v := range d.meta.Volumes {
			names := []string{v}
			if strings.HasSuffix(v, ".log") {
				for i := range 10 {
					names = append(names, fmt.Sprintf("%s.%d", v, i))
				}
			}
			for _, n := range names {
				if err := c.deleteVolume(p, n); err != nil {
					return c.wrap(ctx, err)
				}
			}
		}
	}
	flags := libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata | libvirt.DomainUndefineCheckpointsMetadata
	err = c.l.DomainUndefineFlags(d.ref, flags)
	if notSupported(err) || isCode(err, libvirt.ErrInvalidArg) {
		err = c.l.DomainUndefine(d.ref)
	}
	if err != nil && !isCode(err, libvirt.ErrNoDomain) {
		return c.wrap(ctx, fmt.Errorf("removing domain %s: %w", d.ref.Name, err))
	}
	return nil
}

// gc removes network name, k2's for env, when no domain of env is left.
func (c *conn) gc(ctx context.Context, name, env string) error {
	doms, err := c.domains(ctx)
	if err != nil {
		return err
	}
	for _, d := range doms {
		if d.meta.Environment == env || d.meta.Network == name {
			return nil // still in use
		}
	}
	return c.deleteNetwork(ctx, name)
}

// deleteUnusedImages removes the image volumes (k2os-…) of the pools k2
// uses that no domain boots any more.
func (c *conn) deleteUnusedImages(ctx context.Context) error {
	all, _, err := c.l.ConnectListAllDomains(1, 0)
	if err != nil {
		return c.wrap(ctx, err)
	}
	used := map[string]bool{}
	for _, dom := range all {
		x, err := c.l.DomainGetXMLDesc(dom, libvirt.DomainXMLInactive)
		if err != nil {
			continue // gone meanwhile
		}
		if d, err := parseDomain(x); err == nil {
			used[d.OS.Kernel], used[d.OS.Initrd] = true, true
		}
	}
	pools, _, err := c.l.ConnectListAllStoragePools(1, libvirt.ConnectListStoragePoolsActive)
	if err != nil {
		return c.wrap(ctx, err)
	}
	for _, p := range pools {
		vols, _, err := c.l.StoragePoolListAllVolumes(p, 1, 0)
		if err != nil {
			continue
		}
		for _, v := range vols {
			if !strings.HasPrefix(v.Name, "k2os-") {
				continue
			}
			path, err := c.l.StorageVolGetPath(v)
			if err != nil || used[path] {
				continue
			}
			if err := c.l.StorageVolDelete(v, 0); err != nil && !isCode(err, libvirt.ErrNoStorageVol) {
				return c.wrap(ctx, fmt.Errorf("deleting the unused image volume %s: %w", v.Name, err))
			}
		}
	}
	return nil
}

// Power turns a machine on, off (cleanly, see shutdown) or resets it.
func (p *Provider) Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error) {
	c, ds, err := session(ctx, req.Config)
	if c == nil {
		return &sdk.PowerResponse{Diagnostics: ds}, err
	}
	defer c.close()
	d, err := c.lookup(ctx, req.MachineID)
	if err != nil {
		return nil, err
	}
	if d == nil {
		ds.Errorf("machineID", "no machine %s on %s", req.MachineID, redactURI(c.cfg.URI))
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	active, err := c.l.DomainIsActive(d.ref)
	if err != nil {
		return nil, c.wrap(ctx, err)
	}
	switch req.Action {
	case sdk.PowerOn:
		if active == 0 {
			if _, err := c.l.DomainCreateWithFlags(d.ref, 0); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
				return nil, c.wrap(ctx, err)
			}
		}
	case sdk.PowerOff:
		if active == 1 {
			if err := c.shutdown(ctx, d.ref); err != nil {
				return nil, err
			}
		}
	case sdk.PowerReset:
		var err error
		if active == 1 {
			err = c.l.DomainReset(d.ref, 0)
		} else {
			_, err = c.l.DomainCreateWithFlags(d.ref, 0)
		}
		if err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
			return nil, c.wrap(ctx, err)
		}
	default:
		ds.Errorf("action", "power action %q: use on, off or reset", req.Action)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	m, err := c.describe(ctx, d, false)
	if err != nil {
		return nil, err
	}
	return &sdk.PowerResponse{State: m.State, Diagnostics: ds}, nil
}

// shutdown asks the machine to power off (ACPI power button; k2 init
// stops k2 cleanly), and pulls the plug if it has not after the config's
// shutdown_timeout.
func (c *conn) shutdown(ctx context.Context, dom libvirt.Domain) error {
	err := c.l.DomainShutdownFlags(dom, libvirt.DomainShutdownAcpiPowerBtn)
	if notSupported(err) || isCode(err, libvirt.ErrInvalidArg) { // a driver without ACPI (test)
		err = c.l.DomainShutdown(dom)
	}
	if err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
		return c.wrap(ctx, err)
	}
	deadline := time.Now().Add(c.cfg.stopTimeout)
	for time.Now().Before(deadline) {
		active, err := c.l.DomainIsActive(dom)
		if err != nil {
			return c.wrap(ctx, err)
		}
		if active == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err := c.l.DomainDestroy(dom); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
		return c.wrap(ctx, err)
	}
	return nil
}

// Console copies the machine's serial console log (volume
// k2-<name>-console.log, written by virtlogd from boot on) to req.Output;
// with Follow it keeps copying what is added until ctx ends or the
// domain is gone. Where the pool cannot be read (the test driver), it
// copies the live console instead.
func (p *Provider) Console(ctx context.Context, req *sdk.ConsoleRequest) error {
	err := p.console(ctx, req)
	if req.Follow && ctx.Err() != nil {
		return nil // following ends with ctx
	}
	return err
}

func (p *Provider) console(ctx context.Context, req *sdk.ConsoleRequest) error {
	c, ds, err := session(ctx, req.Config)
	if c == nil {
		if err == nil {
			err = ds.Err()
		}
		return err
	}
	defer c.close()
	d, err := c.lookup(ctx, req.MachineID)
	if err != nil {
		return err
	}
	if d == nil {
		return fmt.Errorf("no machine %s on %s", req.MachineID, redactURI(c.cfg.URI))
	}
	var logVol string
	for _, v := range d.meta.Volumes {
		if strings.HasSuffix(v, "-console.log") {
			logVol = v
		}
	}
	var off uint64
	for {
		pool, err := c.l.StoragePoolLookupByName(d.meta.StoragePool)
		if err != nil {
			return c.wrap(ctx, err)
		}
		vol, err := c.l.StorageVolLookupByName(pool, logVol)
		if err != nil {
			return c.wrap(ctx, fmt.Errorf("the console log of %s: %w", d.meta.Machine, err))
		}
		_, capacity, _, err := c.l.StorageVolGetInfo(vol)
		if err != nil {
			return c.wrap(ctx, err)
		}
		if capacity < off { // virtlogd rotated it
			off = 0
		}
		if capacity > off {
			n, stuck, err := c.download(ctx, vol, req.Output, off, capacity-off)
			off += n
			if stuck {
				// The connection is unusable: carry on with a new one.
				c.abandon()
				if c, err = connect(ctx, c.cfg); err != nil {
					return err
				}
				defer c.close()
			}
			if notSupported(err) {
				return c.liveConsole(ctx, d, req)
			}
			if err != nil {
				return c.wrap(ctx, err)
			}
		} else if c.fake() {
			return c.liveConsole(ctx, d, req)
		}
		if !req.Follow {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.cfg.poll):
		}
		if _, err := c.l.DomainLookupByUUID(d.ref.UUID); isCode(err, libvirt.ErrNoDomain) {
			return nil
		}
	}
}

// liveConsole streams the domain's console from now on (no history);
// a driver without consoles gets a note instead.
func (c *conn) liveConsole(ctx context.Context, d *k2Domain, req *sdk.ConsoleRequest) error {
	if !req.Follow {
		_, err := fmt.Fprintf(req.Output, "(the %s driver keeps no console log of %s)\n", strings.ToLower(c.driver), d.meta.Machine)
		return err
	}
	err := c.l.DomainOpenConsole(d.ref, nil, req.Output, 0)
	if notSupported(err) {
		_, err = fmt.Fprintf(req.Output, "(the %s driver has no console for %s)\n", strings.ToLower(c.driver), d.meta.Machine)
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// download copies length bytes of vol from offset to w and says how many
// it copied. go-libvirt can deadlock a connection at the end of a
// download: when libvirtd ends the stream with an empty data packet and
// then a final status, the first ends the call and the second blocks the
// connection's reader forever (nobody takes it, and it holds the lock
// every call needs). So download returns once all bytes have come, and
// reports stuck when the call has not ended by then (or nothing came for
// downloadStall): the caller must abandon the connection.
func (c *conn) download(ctx context.Context, vol libvirt.StorageVol, w io.Writer, offset, length uint64) (n uint64, stuck bool, err error) {
	cw := &countWriter{w: w, want: length, full: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- c.l.StorageVolDownload(vol, cw, offset, length, 0) }()
	stall := time.NewTimer(downloadStall)
	defer stall.Stop()
	for {
		select {
		case err := <-done:
			return cw.count(), false, err
		case <-cw.full:
			select {
			case err := <-done:
				return cw.count(), false, err
			case <-time.After(2 * time.Second):
				return cw.count(), true, nil
			}
		case <-stall.C:
			return cw.count(), true, fmt.Errorf("reading volume %s (%d bytes from %d) stalled", vol.Name, length, offset)
		case <-ctx.Done():
			return cw.count(), false, ctx.Err()
		}
	}
}

// downloadStall is how long a console read may go without the call ending
// or all its bytes arriving.
var downloadStall = 20 * time.Second

type countWriter struct {
	w    io.Writer
	want uint64
	full chan struct{} // closed when want bytes have been written

	mu sync.Mutex
	n  uint64
}

func (w *countWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= w.want {
		return len(b), nil // past what was asked (a stale size): dropped
	}
	if rest := w.want - w.n; uint64(len(b)) > rest {
		b = b[:rest]
	}
	n, err := w.w.Write(b)
	w.n += uint64(n)
	if w.n >= w.want {
		close(w.full)
	}
	return n, err
}

func (w *countWriter) count() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// parseUUID reads a domain UUID in its usual form.
func parseUUID(s string) (libvirt.UUID, bool) {
	var u libvirt.UUID
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != len(u) || len(s) != 36 {
		return u, false
	}
	copy(u[:], b)
	return u, true
}

func formatUUID(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
