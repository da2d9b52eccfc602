package metal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"k2.dev/k2/internal/netboot"
	"k2.dev/k2/providers/sdk"
)

// Create claims a free server for each machine (idempotent by request id:
// a retry finds its claims), sets a one-time network boot through the
// server's BMC and powers it on (or restarts it), then — with a boot
// server — serves it iPXE, k2 OS and its config and waits until it has
// fetched the config, reporting each boot stage.
func (p *Provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	cfg, ds := load(req.Config)
	ds = append(ds, sdk.CheckMachines(capabilities(), req.Machines, &req.Bootstrap)...)
	ds = append(ds, cfg.checkOS(&req.Bootstrap)...)
	if ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	held, ds, err := p.claim(cfg, req)
	if err != nil || ds.HasErrors() {
		return &sdk.CreateResponse{Diagnostics: ds}, err
	}
	var tc *talosCluster
	if req.Bootstrap.OSOf() == sdk.OSTalos && len(held) > 0 {
		// Every machine's config is made and validated before any BMC is
		// touched: machinery's refusal names the machine.
		env := held[0].req.Labels[sdk.LabelEnvironment]
		if tc, err = openTalos(cfg, env, &req.Bootstrap, held); err != nil {
			if errors.Is(err, ErrTalosConfig) {
				ds.Errorf("config.talosEndpoint", "%v", err)
				return &sdk.CreateResponse{Diagnostics: ds}, nil
			}
			return nil, err
		}
		for i := range held {
			if held[i].talos, err = tc.config(cfg, env, &req.Bootstrap, held[i]); err != nil {
				ds.Errorf(fmt.Sprintf("machines[%d]", held[i].index), "server %s (%s): %v", held[i].server.Name, cfg.inv.Path, err)
			}
		}
		if ds.HasErrors() {
			return &sdk.CreateResponse{Diagnostics: ds}, nil
		}
	}

	var srv *netboot.Server
	if cfg.BootAddress != "" {
		s, release, err := p.boot.acquire(cfg.bootOptions(), p.log())
		if err != nil {
			return nil, fmt.Errorf("starting the boot server: %w", err)
		}
		defer release()
		srv = s
	}
	out := make([]sdk.Machine, len(held))
	errs := make([]error, len(held))
	done := make(chan int, len(held))
	for i, h := range held {
		go func() {
			out[i], errs[i] = p.boot1(ctx, cfg, srv, req, h)
			if errs[i] == nil && tc != nil && out[i].State != sdk.StateFailed {
				out[i], errs[i] = p.bootstrapTalos(ctx, cfg, req, tc, h, out[i])
			}
			done <- i
		}()
	}
	for range held {
		<-done
	}
	for i, err := range errs {
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var be *BMCError
		if errors.As(err, &be) {
			ds.Errorf(fmt.Sprintf("machines[%d]", held[i].index), "%v", err)
			continue
		}
		return nil, err
	}
	resp := &sdk.CreateResponse{Machines: out, Diagnostics: ds}
	if tc != nil {
		resp.Kubeconfig = tc.kubeconfig
	}
	return resp, nil
}

// bootstrapTalos starts etcd on the environment's first Talos control
// plane once it fetched its config (once per cluster), as `talosctl
// bootstrap` would.
func (p *Provider) bootstrapTalos(ctx context.Context, cfg *config, req *sdk.CreateRequest, tc *talosCluster, h held, m sdk.Machine) (sdk.Machine, error) {
	if h.req.Role != "control-plane" || tc.Bootstrapped != "" {
		return m, nil
	}
	if cfg.bootTimeout == 0 {
		m.Message += "; not waited for (bootTimeout 0s), so etcd is not bootstrapped: run 'talosctl bootstrap' on it"
		return m, nil
	}
	port := talosAPIPort
	if p.talosPort != 0 {
		port = p.talosPort
	}
	addr := talosAPIAddr(h.server, m.Addresses, port)
	if addr == "" {
		return m, fmt.Errorf("server %s: no address to reach its Talos API: set its address in %s", h.server.Name, cfg.inv.Path)
	}
	req.Report(h.req.Name, "bootstrapping etcd through the Talos API at %s", addr)
	if err := talosBootstrap(ctx, tc.bundle, addr, cfg.bootstrapTimeout, func(msg string) { req.Report(h.req.Name, "%s", msg) }); err != nil {
		m.State, m.Message = sdk.StateFailed, err.Error()
		_ = updateClaim(cfg.StateDir, h.server.Name, func(c *claim) { c.Message = m.Message })
		return m, nil
	}
	if err := markBootstrapped(cfg.StateDir, h.claim.Env, h.req.Name); err != nil {
		return m, err
	}
	m.Message += "; etcd bootstrapped through " + addr
	return m, nil
}

// bootOptions are the boot server's options from the config.
func (c *config) bootOptions() netboot.Options {
	o := netboot.Options{HTTPAddr: c.BootAddress, URL: c.BootURL, TFTPAddr: c.TFTPAddress, IPXEDir: c.IPXEDir}
	if c.ProxyDHCP {
		o.DHCPAddr, o.DHCPInterface, o.EFIBootFile = c.DHCPAddress, c.DHCPIface, c.EFIBootFile
		if h, port, err := net.SplitHostPort(c.DHCPAddress); err == nil && port == "67" {
			o.PXEAddr = net.JoinHostPort(h, "4011")
		}
	}
	return o
}

// held is a machine request and the server it holds.
type held struct {
	index  int
	req    sdk.MachineRequest
	server Server
	claim  claim
	// talos is the machine's Talos config (OS talos).
	talos []byte
}

// claim finds or takes a server for every machine, all or none.
func (p *Provider) claim(cfg *config, req *sdk.CreateRequest) ([]held, sdk.Diagnostics, error) {
	var ds sdk.Diagnostics
	c, err := openClaims(cfg.StateDir)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	var out []held
	taken := map[string]bool{}
	for i, m := range req.Machines {
		env := m.Labels[sdk.LabelEnvironment]
		path := fmt.Sprintf("machines[%d]", i)
		if cl := c.byRequest(req.RequestID, m.Name); cl != nil {
			s, ok := cfg.inv.Server(cl.Server)
			if !ok {
				ds.Errorf(path, "machine %s holds server %s, which is no longer in the inventory %s; put it back or delete the machine", m.Name, cl.Server, cfg.inv.Path)
				continue
			}
			out = append(out, held{index: i, req: m, server: s, claim: *cl})
			taken[s.Name] = true
			continue
		}
		if cl := c.byMachine(m.Name); cl != nil && cl.Env == env {
			ds.Errorf(path+".name", "machine %q already holds server %s (request %s); delete it or pick another name", m.Name, cl.Server, cl.RequestID)
			continue
		}
		s, why := pick(cfg.inv, c, taken, m)
		if why != "" {
			ds.Errorf(path, "%v for machine %s: %s", ErrNoServer, m.Name, why)
			continue
		}
		taken[s.Name] = true
		out = append(out, held{index: i, req: m, server: s, claim: claim{
			Server: s.Name, Env: env, Machine: m.Name, RequestID: req.RequestID,
			Role: m.Role, Pool: m.Pool, Labels: m.Labels, ClaimedAt: time.Now().UTC(),
		}})
	}
	if ds.HasErrors() {
		return nil, ds, nil
	}
	for _, h := range out {
		if c.byServer(h.server.Name) == nil {
			c.Claims = append(c.Claims, h.claim)
		}
	}
	if err := c.save(); err != nil {
		return nil, nil, fmt.Errorf("saving claims: %w", err)
	}
	return out, ds, nil
}

// pick chooses a free server for m: its arch, enough cpu and memory, and
// hints that match (servers whose hints match exactly come first).
func pick(inv *Inventory, c *claims, taken map[string]bool, m sdk.MachineRequest) (Server, string) {
	var best *Server
	bestScore := -1
	var held []string
	fit := 0
	for i := range inv.Machines {
		s := &inv.Machines[i]
		if m.Arch != "" && s.Arch != m.Arch ||
			s.Role != "" && s.Role != m.Role ||
			s.Pool != "" && s.Pool != m.Pool ||
			m.CPU > 0 && s.CPU > 0 && int(m.CPU) > s.CPU ||
			m.MemoryBytes > 0 && s.MemoryBytes() > 0 && m.MemoryBytes > s.MemoryBytes() {
			continue
		}
		fit++
		if cl := c.byServer(s.Name); cl != nil || taken[s.Name] {
			if cl != nil {
				held = append(held, fmt.Sprintf("%s by %s/%s", s.Name, cl.Env, cl.Machine))
			}
			continue
		}
		score := 0
		if s.Role != "" {
			score++
		}
		if s.Pool != "" {
			score++
		}
		if score > bestScore {
			best, bestScore = s, score
		}
	}
	if best != nil {
		return *best, ""
	}
	if fit == 0 {
		return Server{}, fmt.Sprintf("none of the %d servers in %s fits (arch %s, role %s, pool %s, cpu %d, memory %d bytes)", len(inv.Machines), inv.Path, m.Arch, m.Role, m.Pool, m.CPU, m.MemoryBytes)
	}
	return Server{}, fmt.Sprintf("all %d fitting servers are held (%s); add servers to %s or destroy an environment", fit, strings.Join(held, ", "), inv.Path)
}

// boot1 network-boots one held server and returns its machine.
func (p *Provider) boot1(ctx context.Context, cfg *config, srv *netboot.Server, req *sdk.CreateRequest, h held) (sdk.Machine, error) {
	m := machineOf(h.claim, h.server)
	if h.claim.Boot[netboot.StageConfig] != (time.Time{}) {
		return m, nil // it fetched its config already: do not boot it again
	}
	if srv != nil {
		nm := netboot.Machine{
			Name: h.req.Name, MAC: h.server.MAC, Kernel: cfg.kernel(), Initramfs: cfg.initramfs(),
			Cmdline: cfg.cmdline(), Config: req.Bootstrap.UserData,
		}
		if h.talos != nil {
			nm.Kernel, nm.Initramfs, nm.ConfigParam, nm.Config = cfg.TalosKernel, cfg.TalosInitramfs, "talos.config", h.talos
			nm.Cmdline = strings.TrimSpace(talosKernelArgs + " " + *cfg.KernelArgs)
		}
		err := srv.Add(nm)
		if err != nil {
			return m, err
		}
		defer srv.Remove(h.server.MAC)
	}
	req.Report(h.req.Name, "connecting to the BMC of server %s (%s)", h.server.Name, h.server.BMC.Endpoint)
	conn, err := dialBMC(ctx, h.server, p.retryPolicy(cfg), p.log())
	if err != nil {
		return m, err
	}
	defer conn.Close()
	httpURI := ""
	if cfg.HTTPBoot && srv != nil {
		httpURI = srv.URL() + "/boot.ipxe"
	}
	target, err := conn.SetNetworkBootOnce(ctx, cfg.BootMode == "uefi", httpURI)
	if err != nil {
		return m, err
	}
	req.Report(h.req.Name, "server %s: one-time boot from %s set; powering on", h.server.Name, target)
	if err := conn.Reset(ctx, "reset"); err != nil {
		return m, err
	}
	if err := updateClaim(cfg.StateDir, h.server.Name, func(c *claim) { c.PoweredOn = true; c.Boot = nil; c.BootBytes = 0 }); err != nil {
		return m, err
	}
	m.State, m.Message = sdk.StateRunning, "powered on, booting from "+target
	if srv == nil || cfg.bootTimeout == 0 {
		return m, nil
	}
	return p.waitBoot(ctx, cfg, srv, req, h, m)
}

// waitBoot follows the machine through the boot stages until it fetched its
// config, recording them in its claim.
func (p *Provider) waitBoot(ctx context.Context, cfg *config, srv *netboot.Server, req *sdk.CreateRequest, h held, m sdk.Machine) (sdk.Machine, error) {
	deadline := time.NewTimer(cfg.bootTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	last := ""
	save := func(pr netboot.Progress) {
		_ = updateClaim(cfg.StateDir, h.server.Name, func(c *claim) {
			c.Boot, c.BootBytes, c.Addresses = pr.Stages, pr.Bytes, pr.Addresses
		})
	}
	reported := map[string]bool{}
	for {
		pr, _ := srv.Progress(h.server.MAC)
		var fresh []string
		for st := range pr.Stages {
			if !reported[st] {
				fresh = append(fresh, st)
			}
		}
		sort.Slice(fresh, func(i, j int) bool { return pr.Stages[fresh[i]].Before(pr.Stages[fresh[j]]) })
		for _, st := range fresh {
			reported[st] = true
			req.Report(h.req.Name, "boot stage %s after %s", st, pr.Stages[st].Sub(start).Round(100*time.Millisecond))
		}
		if pr.Stage != last {
			last = pr.Stage
			save(pr)
		}
		if pr.Stage == netboot.StageConfig {
			m.Addresses = pr.Addresses
			os := "k2 OS"
			if req.Bootstrap.OSOf() == sdk.OSTalos {
				os = "Talos " + req.Bootstrap.OSVersion
			}
			m.Message = fmt.Sprintf("booted %s; config fetched after %s (%d bytes served)", os, time.Since(start).Round(time.Second), pr.Bytes)
			return m, nil
		}
		select {
		case <-ctx.Done():
			save(pr)
			return m, ctx.Err()
		case <-deadline.C:
			stage := pr.Stage
			if stage == "" {
				stage = "none (no DHCP/TFTP/HTTP request from " + h.server.MAC + ")"
			}
			m.State = sdk.StateFailed
			m.Message = fmt.Sprintf("no config fetched after %s; last boot stage reached: %s%s", cfg.bootTimeout, stage, stageHint(cfg, pr.Stage))
			_ = updateClaim(cfg.StateDir, h.server.Name, func(c *claim) { c.Message = m.Message })
			return m, nil
		case <-tick.C:
		}
	}
}

// stageHint says what to look at when a machine stopped after stage.
func stageHint(cfg *config, stage string) string {
	switch stage {
	case "":
		if cfg.ProxyDHCP {
			return "; proxy DHCP heard no PXE request from it: check the inventory's mac is its boot NIC, that the NIC network-boots, and dhcpInterface"
		}
		return "; check the site's DHCP sends it to k2's boot server (docs/metal.md) and the inventory's mac is its boot NIC"
	case netboot.StageDHCP:
		return "; it got proxy DHCP's answer but fetched no iPXE: check that UDP " + cfg.TFTPAddress + " (TFTP) reaches this host"
	case netboot.StageTFTP:
		return "; it loaded iPXE but did not fetch its script: check that iPXE reaches " + cfg.BootAddress + " (HTTP)"
	}
	return ""
}

// machineOf renders a claim as an sdk.Machine.
func machineOf(c claim, s Server) sdk.Machine {
	m := sdk.Machine{
		ID: idOf(c.Server), Name: c.Machine, RequestID: c.RequestID, State: sdk.StatePending,
		Role: c.Role, Pool: c.Pool, Arch: s.Arch, CPU: int32(s.CPU), MemoryBytes: s.MemoryBytes(),
		Addresses: c.Addresses, Labels: c.Labels, Message: c.Message,
	}
	if c.PoweredOn {
		m.State = sdk.StateRunning
	}
	if m.Message == "" && len(c.Boot) > 0 {
		var stages []string
		for k := range c.Boot {
			stages = append(stages, k)
		}
		sort.Slice(stages, func(i, j int) bool { return c.Boot[stages[i]].Before(c.Boot[stages[j]]) })
		m.Message = "boot stages: " + strings.Join(stages, " → ")
	}
	return m
}

// List returns the claimed servers as machines (optionally of one
// request). It does not ask the BMCs: k2 status does that through Power.
func (p *Provider) List(_ context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	cfg, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.ListResponse{Diagnostics: ds}, nil
	}
	c, err := openClaims(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := []sdk.Machine{}
	for _, cl := range c.Claims {
		if req.RequestID != "" && cl.RequestID != req.RequestID {
			continue
		}
		s, _ := cfg.inv.Server(cl.Server)
		out = append(out, machineOf(cl, s))
	}
	return &sdk.ListResponse{Machines: out}, nil
}

// Delete powers each server off through its BMC, clears a pending boot
// override, and releases its claim. A server whose BMC cannot be reached
// keeps its claim (a diagnostic says so) so that nothing is lost.
func (p *Provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	cfg, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.DeleteResponse{Diagnostics: ds}, nil
	}
	resp := &sdk.DeleteResponse{Deleted: []string{}}
	for i, id := range req.MachineIDs {
		name := serverOf(id)
		c, err := openClaims(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		cl := c.byServer(name)
		c.Close()
		if cl == nil {
			resp.Deleted = append(resp.Deleted, id) // gone already, or never ours
			continue
		}
		if s, ok := cfg.inv.Server(name); ok && cl.PoweredOn {
			if err := p.powerOff(ctx, cfg, s); err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				ds.Errorf(fmt.Sprintf("machineIDs[%d]", i), "%v; the server stays claimed by %s/%s until it is powered off (run k2 destroy again)", err, cl.Env, cl.Machine)
				continue
			}
		}
		c, err = openClaims(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		c.release(name)
		err = c.save()
		if err == nil && !slices.ContainsFunc(c.Claims, func(o claim) bool { return o.Env == cl.Env }) {
			// The environment's last server: its Talos cluster (secrets,
			// bootstrap record) goes too, so a new one of the same name
			// is a new cluster.
			err = os.RemoveAll(talosDir(cfg.StateDir, cl.Env))
		}
		c.Close()
		if err != nil {
			return nil, err
		}
		resp.Deleted = append(resp.Deleted, id)
	}
	resp.Diagnostics = ds
	return resp, nil
}

func (p *Provider) powerOff(ctx context.Context, cfg *config, s Server) error {
	conn, err := dialBMC(ctx, s, p.retryPolicy(cfg), p.log())
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Reset(ctx, "off")
}

// Power switches a claimed server on or off, or restarts it, through its
// BMC, and returns its power state.
func (p *Provider) Power(ctx context.Context, req *sdk.PowerRequest) (*sdk.PowerResponse, error) {
	cfg, ds := load(req.Config)
	if ds.HasErrors() {
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	if !slices.Contains([]string{sdk.PowerOn, sdk.PowerOff, sdk.PowerReset}, req.Action) {
		ds.Errorf("action", "power action %q: use on, off or reset", req.Action)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	s, ok := cfg.inv.Server(serverOf(req.MachineID))
	if !ok {
		ds.Errorf("machineID", "no server %q in the inventory %s", serverOf(req.MachineID), cfg.inv.Path)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	conn, err := dialBMC(ctx, s, p.retryPolicy(cfg), p.log())
	if err != nil {
		ds.Errorf("machineID", "%v", err)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	defer conn.Close()
	if err := conn.Reset(ctx, req.Action); err != nil {
		ds.Errorf("machineID", "%v", err)
		return &sdk.PowerResponse{Diagnostics: ds}, nil
	}
	_ = updateClaim(cfg.StateDir, s.Name, func(c *claim) { c.PoweredOn = req.Action != sdk.PowerOff })
	st, err := conn.PowerState(ctx)
	if err != nil {
		ds.Errorf("machineID", "%v", err)
	}
	state := sdk.StateRunning
	if st == "Off" {
		state = sdk.StateStopped
	}
	return &sdk.PowerResponse{State: state, Diagnostics: ds}, nil
}
