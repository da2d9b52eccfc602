package libvirt

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"

	"k2.dev/k2/internal/fatfs"
	"k2.dev/k2/internal/output"
	"k2.dev/k2/providers/sdk"
)

// Create makes the request's machines (see the package doc), or finds
// those a previous call with the same request id made.
func (p *Provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, &req.Bootstrap)...)
	ds = append(ds, checkMachines(req.Machines)...)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	img, err := openImage(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if diagnose(&ds, "config.image", err) {
			return &sdk.CreateResponse{Diagnostics: ds}, nil
		}
		return nil, err
	}
	if ds = append(ds, img.check(req.Machines)...); ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	c, err := connect(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if diagnose(&ds, "config.uri", err) {
			return &sdk.CreateResponse{Diagnostics: ds}, nil
		}
		return nil, err
	}
	defer c.close()
	fail := func(i int, err error, made []sdk.Machine) (*sdk.CreateResponse, error) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if diagnose(&ds, fmt.Sprintf("machines[%d]", i), err) {
			return &sdk.CreateResponse{Machines: made, Diagnostics: ds}, nil
		}
		if i >= 0 {
			return nil, fmt.Errorf("machine %s: %w", req.Machines[i].Name, err)
		}
		return nil, err
	}
	if err := c.checkDomainType(ctx); err != nil {
		return fail(-1, err, nil)
	}
	var doms []libvirt.Domain
	var out []sdk.Machine
	for i, m := range req.Machines {
		dom, err := c.create(ctx, req, m, img)
		if err != nil {
			return fail(i, err, out)
		}
		doms = append(doms, dom)
		got, err := c.machine(ctx, dom, false)
		if err != nil {
			return fail(i, err, out)
		}
		out = append(out, *got)
	}
	for i, dom := range doms {
		got, err := c.waitAddress(ctx, req, dom)
		if err != nil {
			return fail(i, err, out)
		}
		out[i] = *got
	}
	return &sdk.CreateResponse{Machines: out, Diagnostics: ds}, nil
}

// volumes are a machine's own volumes.
type volumes struct {
	Data, CIData, Console string
}

func machineVolumes(name string) volumes {
	return volumes{Data: "k2-" + name + "-data", CIData: "k2-" + name + "-cidata", Console: "k2-" + name + "-console.log"}
}

func (v volumes) list() []string { return []string{v.Data, v.CIData, v.Console} }

// create finds machine m's domain (made by an earlier attempt of req) or
// defines it, makes its volumes, uploads the image if the pool lacks it
// and boots it.
func (c *conn) create(ctx context.Context, req *sdk.CreateRequest, m sdk.MachineRequest, img *bootImage) (libvirt.Domain, error) {
	report := func(format string, args ...any) { req.Report(m.Name, format, args...) }
	running := false
	dom, err := c.l.DomainLookupByName(m.Name)
	switch {
	case err == nil:
		x, err := c.l.DomainGetXMLDesc(dom, libvirt.DomainXMLInactive)
		if err != nil {
			return dom, c.wrap(ctx, err)
		}
		d, err := parseDomain(x)
		if err != nil {
			return dom, err
		}
		meta := d.meta()
		if meta == nil {
			return dom, userErrorf("", "a libvirt domain named %s exists that k2 did not make; remove or rename it, or deploy to another environment", m.Name)
		}
		if meta.RequestID != req.RequestID {
			return dom, userErrorf("", "domain %s belongs to request %s of environment %s, not to this one (%s); destroy that environment first, or deploy under another name", m.Name, meta.RequestID, meta.Environment, req.RequestID)
		}
		state, _, err := c.l.DomainGetState(dom, 0)
		if err != nil {
			return dom, c.wrap(ctx, err)
		}
		running = libvirt.DomainState(state) != libvirt.DomainShutoff && libvirt.DomainState(state) != libvirt.DomainCrashed
		report("found domain %s from an earlier attempt (%s)", m.Name, stateName(state))
		if running {
			return dom, nil
		}
	case isCode(err, libvirt.ErrNoDomain):
	default:
		return dom, c.wrap(ctx, err)
	}

	p, err := c.openPool(ctx, c.cfg.Pool, report)
	if err != nil {
		return dom, err
	}
	env := environment(m)
	netName, owned, err := c.ensureNetwork(ctx, env, req.RequestID, report)
	if err != nil {
		return dom, err
	}
	vols := machineVolumes(m.Name)
	spec := c.domainSpec(req.RequestID, m, p, netName, owned, img, vols)
	cpu, mem, disk := size(m)
	report("defining domain %s (%d CPU, %s memory, %s disk, %s) on network %s", m.Name, cpu, output.Bytes(mem), output.Bytes(disk), c.cfg.DomainType, netName)
	// Defined first, with its labels and the names of all it uses: a
	// crash from here on leaves a domain that leads to everything.
	dom, err = c.l.DomainDefineXMLFlags(spec, 0)
	if err != nil {
		return dom, c.wrap(ctx, fmt.Errorf("defining domain %s: %w", m.Name, err))
	}
	if err := c.ensureVolume(ctx, p, vols.Data, disk); err != nil {
		return dom, err
	}
	if err := c.ensureVolume(ctx, p, vols.Console, 0); err != nil {
		return dom, err
	}
	ci, err := fatfs.Cidata(req.Bootstrap.UserData, m.Name)
	if err != nil {
		return dom, userErrorf("bootstrap.userData", "making the cidata volume: %v", err)
	}
	if err := c.writeVolume(ctx, p, vols.CIData, ci); err != nil {
		return dom, err
	}
	for _, f := range []imageFile{img.Kernel, img.Initramfs} {
		if _, err := c.ensureImageFile(ctx, p, f, report); err != nil {
			return dom, err
		}
	}
	report("booting %s", m.Name)
	if _, err := c.l.DomainCreateWithFlags(dom, 0); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
		return dom, c.wrap(ctx, fmt.Errorf("starting domain %s: %w", m.Name, err))
	}
	return dom, nil
}

// ensureVolume makes a volume of capacity bytes unless it exists.
func (c *conn) ensureVolume(ctx context.Context, p *pool, name string, capacity int64) error {
	if _, err := c.l.StorageVolLookupByName(p.ref, name); err == nil {
		return nil
	} else if !isCode(err, libvirt.ErrNoStorageVol) {
		return c.wrap(ctx, err)
	}
	_, err := c.createVolume(p, name, capacity)
	return c.wrap(ctx, err)
}

// writeVolume makes volume name hold b.
func (c *conn) writeVolume(ctx context.Context, p *pool, name string, b []byte) error {
	vol, err := c.l.StorageVolLookupByName(p.ref, name)
	if isCode(err, libvirt.ErrNoStorageVol) {
		vol, err = c.createVolume(p, name, int64(len(b)))
	}
	if err != nil {
		return c.wrap(ctx, err)
	}
	if c.fake() {
		return nil // the test driver keeps no data
	}
	if err := c.l.StorageVolUpload(vol, strings.NewReader(string(b)), 0, uint64(len(b)), 0); err != nil {
		return c.wrap(ctx, fmt.Errorf("writing volume %s: %w", name, err))
	}
	return nil
}

// checkDomainType refuses kvm where the hypervisor does not offer it.
func (c *conn) checkDomainType(ctx context.Context) error {
	if c.cfg.DomainType != DomainKVM || c.fake() {
		return nil
	}
	caps, err := c.l.ConnectGetCapabilities()
	if err != nil {
		return c.wrap(ctx, err)
	}
	if !strings.Contains(caps, "<domain type='kvm'") && !strings.Contains(caps, `<domain type="kvm"`) {
		return userErrorf("config.domain_type", "the hypervisor at %s offers no kvm (no usable /dev/kvm, or nested virtualisation is off); use domain_type qemu", redactURI(c.cfg.URI))
	}
	return nil
}

// size is a machine's CPU count, memory and disk, with the defaults.
func size(m sdk.MachineRequest) (cpu int32, mem, disk int64) {
	cpu, mem, disk = m.CPU, m.MemoryBytes, m.DiskBytes
	if cpu == 0 {
		cpu = defaultCPU
	}
	if mem == 0 {
		mem = defaultMemory
	}
	if disk == 0 {
		disk = defaultDisk
	}
	return cpu, mem, disk
}

// identity derives a domain's UUID and MAC address from its request id
// and name: a redefinition by a retried Create is the same domain, and
// its address lease the same.
func identity(reqID, name string) (uuid, mac string) {
	h := sha256.Sum256([]byte("k2-libvirt\x00" + reqID + "\x00" + name))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x50 // version 5 (name-based)
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	uuid = fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
	mac = fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[16], h[17], h[18])
	return uuid, mac
}

// domainSpec is the XML of machine m's domain: direct kernel boot of the
// image, the data disk (vda), the cidata volume (vdb, read-only), one
// virtio NIC on the network, the serial console logged to a volume, and
// the k2 metadata.
func (c *conn) domainSpec(reqID string, m sdk.MachineRequest, p *pool, netName string, owned bool, img *bootImage, vols volumes) string {
	uuid, mac := identity(reqID, m.Name)
	cpu, mem, _ := size(m)
	d := domainXML{Type: c.cfg.DomainType, Name: m.Name, UUID: uuid, Title: "k2 " + m.Role + " " + m.Name}
	if c.fake() {
		d.Type = "test"
	}
	arch := m.Arch
	if arch == "" {
		arch = "amd64"
	}
	d.Metadata = &metadata{Machine: &machineMeta{
		Environment: environment(m), RequestID: reqID, Machine: m.Name, Role: m.Role, MachinePool: m.Pool, Arch: arch,
		StoragePool: c.cfg.Pool, Volumes: vols.list(), Network: netName, NetworkMine: owned, Image: img.Ref,
		Labels: labelList(m.Labels),
	}}
	d.Memory = sizeXML{Unit: "MiB", Value: uint64(mem >> 20)}
	d.VCPU = int(cpu)
	d.OS.Type.Arch, d.OS.Type.Value = "x86_64", "hvm"
	d.OS.Kernel, d.OS.Initrd = p.path(img.Kernel.volume()), p.path(img.Initramfs.volume())
	d.OS.Cmdline = strings.TrimSpace(img.Cmdline + " " + c.cfg.KernelArgs)
	if d.OS.Cmdline == "" {
		d.OS.Cmdline = "console=ttyS0,115200n8 panic=10"
	}
	d.Features = &featuresXML{ACPI: &struct{}{}, APIC: &struct{}{}}
	switch model := c.cfg.CPUModel; {
	case model == "host-passthrough" || model == "host-model" || model == "maximum" || (model == "" && c.cfg.DomainType == DomainKVM):
		if model == "" {
			model = "host-passthrough"
		}
		d.CPU = &cpuXML{Mode: model}
	case model != "":
		d.CPU = &cpuXML{Mode: "custom", Match: "exact", Model: &cpuModelXML{Fallback: "allow", Value: model}}
	}
	d.OnPoweroff, d.OnReboot, d.OnCrash = "destroy", "restart", "destroy"
	disk := func(dev, file string, ro bool) diskXML {
		x := diskXML{Type: "file", Device: "disk", Driver: &driverXML{Name: "qemu", Type: "raw", Cache: c.cfg.DiskCache}}
		x.Source.File = file
		x.Target.Dev, x.Target.Bus = dev, "virtio"
		if ro {
			x.ReadOnly = &struct{}{}
		}
		return x
	}
	d.Devices.Disks = []diskXML{disk("vda", p.path(vols.Data), false), disk("vdb", p.path(vols.CIData), true)}
	nic := interfaceXML{Type: "network", MAC: &macXML{mac}, Model: &modelXML{"virtio"}}
	nic.Source.Network = netName
	d.Devices.Interfaces = []interfaceXML{nic}
	port := 0
	serial := charXML{Type: "pty", Log: &logXML{p.path(vols.Console), "on"}, Target: &charTargetXML{Port: &port}}
	console := charXML{Type: "pty", Target: &charTargetXML{Type: "serial", Port: &port}}
	d.Devices.Serials, d.Devices.Consoles = []charXML{serial}, []charXML{console}
	rng := &rngXML{Model: "virtio"}
	rng.Backend.Model, rng.Backend.Value = "random", "/dev/urandom"
	d.Devices.RNG = rng
	return mustXML(d)
}

// waitAddress waits until the domain has an IPv4 address from its
// network's DHCP leases and returns the machine with it.
func (c *conn) waitAddress(ctx context.Context, req *sdk.CreateRequest, dom libvirt.Domain) (*sdk.Machine, error) {
	deadline := time.Now().Add(c.cfg.addrTimeout)
	said := false
	for {
		m, err := c.machine(ctx, dom, true)
		if err != nil {
			return nil, err
		}
		if len(m.Addresses) > 0 {
			req.Report(m.Name, "%s has address %s; waiting for it to join", m.Name, strings.Join(m.Addresses, ", "))
			return m, nil
		}
		if m.State == sdk.StateStopped || m.State == sdk.StateFailed {
			return nil, userErrorf("", "domain %s stopped while booting (%s); its serial console log is volume %s", m.Name, m.Message, machineVolumes(m.Name).Console)
		}
		if !said {
			req.Report(m.Name, "waiting for %s's DHCP lease", m.Name)
			said = true
		}
		if time.Now().After(deadline) {
			return nil, userErrorf("", "domain %s got no DHCP lease within %s (address_timeout); look at its console log (volume %s) for why it did not reach its network", m.Name, c.cfg.addrTimeout, machineVolumes(m.Name).Console)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.cfg.poll):
		}
	}
}
