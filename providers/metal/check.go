package metal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/stmcginnis/gofish/redfish"
)

// ServerReport is what `k2 metal inventory check` learns of one server.
type ServerReport struct {
	Name         string   `json:"name"`
	Endpoint     string   `json:"endpoint"`
	OK           bool     `json:"ok"`
	PowerState   string   `json:"powerState,omitempty"`
	Manufacturer string   `json:"manufacturer,omitempty"`
	Model        string   `json:"model,omitempty"`
	SerialNumber string   `json:"serialNumber,omitempty"`
	BootTargets  []string `json:"bootTargets,omitempty"`
	BootMode     string   `json:"bootMode,omitempty"`
	// MAC is the inventory's boot MAC; MACSeen says whether the BMC lists a
	// NIC with it (nil when the BMC lists no NICs).
	MAC     string `json:"mac"`
	MACSeen *bool  `json:"macSeen,omitempty"`
	// Error and Kind (bad-credentials, unreachable, not-supported, bmc)
	// are set when the BMC could not be read.
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// InventoryReport is the result of CheckInventory.
type InventoryReport struct {
	Inventory string         `json:"inventory"`
	Servers   []ServerReport `json:"servers"`
	Failed    int            `json:"failed"`
}

// ErrCheckFailed means at least one BMC could not be read.
var ErrCheckFailed = errors.New("inventory check failed")

// CheckInventory reads the inventory at path and reaches every server's BMC
// (8 at a time), reading its power state, model, serial number and boot
// options. It changes nothing. The error is ErrCheckFailed (with the
// report filled) when some BMC failed, or the inventory's own error.
func CheckInventory(ctx context.Context, path string, log *slog.Logger) (*InventoryReport, error) {
	inv, err := LoadInventory(path)
	if err != nil {
		return nil, err
	}
	rep := &InventoryReport{Inventory: path, Servers: make([]ServerReport, len(inv.Machines))}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, s := range inv.Machines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rep.Servers[i] = checkServer(ctx, s, log)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, s := range rep.Servers {
		if !s.OK {
			rep.Failed++
		}
	}
	if rep.Failed > 0 {
		return rep, fmt.Errorf("%w: %d of %d BMCs could not be read", ErrCheckFailed, rep.Failed, len(rep.Servers))
	}
	return rep, nil
}

func checkServer(ctx context.Context, s Server, log *slog.Logger) ServerReport {
	r := ServerReport{Name: s.Name, Endpoint: s.BMC.Endpoint, MAC: s.MAC}
	fail := func(err error) ServerReport {
		r.Error = err.Error()
		for k, name := range map[error]string{ErrBadCredentials: "bad-credentials", ErrUnreachable: "unreachable", ErrNotSupported: "not-supported", ErrBMC: "bmc"} {
			if errors.Is(err, k) {
				r.Kind = name
			}
		}
		return r
	}
	conn, err := dialBMC(ctx, s, defaultRetry, log)
	if err != nil {
		return fail(err)
	}
	defer conn.Close()
	sys := conn.sys
	r.PowerState, r.Manufacturer, r.Model, r.SerialNumber = string(sys.PowerState), sys.Manufacturer, sys.Model, sys.SerialNumber
	r.BootMode = string(sys.Boot.BootSourceOverrideMode)
	if r.BootTargets, err = conn.BootTargets(ctx); err != nil {
		return fail(err)
	}
	var nics []*redfish.EthernetInterface
	if err := conn.do(ctx, "listing NICs", func() (err error) { nics, err = sys.EthernetInterfaces(); return err }); err == nil && len(nics) > 0 {
		seen := false
		for _, n := range nics {
			if strings.EqualFold(n.MACAddress, s.MAC) || strings.EqualFold(n.PermanentMACAddress, s.MAC) {
				seen = true
			}
		}
		r.MACSeen = &seen
	}
	r.OK = true
	return r
}
