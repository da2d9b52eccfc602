package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"

	"k8s.io/client-go/tools/clientcmd"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/providers/sdk"
	"k2.dev/k2/provision/controlplane"
	"k2.dev/k2/provision/engine"
	"k2.dev/k2/provision/machineconfig"
)

// usesMachineConfig reports whether machines boot k2 OS (or run k2 init)
// and so get a machine config instead of a command to run: user-data for
// clouds and libvirt, network-boot for metal (the boot server serves the
// same bytes at the k2.config URL).
func usesMachineConfig(method string) bool {
	return method == sdk.BootstrapUserData || method == sdk.BootstrapNetworkBoot
}

// maxPlainUserData is the size above which the machine config is gzipped:
// EC2 takes at most 16 KiB of user-data.
const maxPlainUserData = 12 << 10

// machineConfig makes machine m's config. The first control plane gets the
// cluster identity (its PKI with the CA key, the join tokens) and serves
// it; every other machine gets the server's URL and the join token. Each
// machine's config goes only to that machine, in its own Create call.
func (c *run) machineConfig(ctx context.Context, st *engine.State, m engine.MachinePlan) (sdk.Bootstrap, error) {
	id, err := c.load(ctx, st)
	if err != nil {
		return sdk.Bootstrap{}, err
	}
	tok, err := join.Parse(id.Token)
	if err != nil {
		return sdk.Bootstrap{}, fmt.Errorf("the environment's join token: %w", err)
	}
	cfg := &machineconfig.Config{
		APIVersion: machineconfig.APIVersion, Kind: machineconfig.Kind,
		Role:     m.Role,
		NodeName: m.Name,
		Labels:   maps.Clone(m.Request().Labels),
		Token:    id.Token,
		CAHash:   tok.CAHash,
		// The first empty disk (or the one k2 formatted before) keeps
		// /var/lib/k2 across reboots; without one k2 runs from memory.
		DataDisk: &machineconfig.DataDisk{Device: machineconfig.DataDiskAuto},
	}
	b := sdk.Bootstrap{Method: st.Plan.Bootstrap, JoinToken: id.Token}
	if m.Role == engine.RoleControlPlane && m.Index == 0 {
		seed, err := controlplane.MakeSeed(c.dir(st))
		if err != nil {
			return sdk.Bootstrap{}, err
		}
		cfg.ControlPlane = &machineconfig.ControlPlane{
			Identity: base64.StdEncoding.EncodeToString(seed),
			Port:     id.Port, JoinPort: id.JoinPort,
		}
	} else {
		cfg.Server = c.serverURL(ctx, st, id)
		cfg.JoinURL = c.firstJoinURL(ctx, st, id)
		b.ServerURL = cfg.Server
	}
	if _, err := cfg.Validate(); err != nil {
		return sdk.Bootstrap{}, fmt.Errorf("making the machine config of %s: %w", m.Name, err)
	}
	if b.UserData, err = machineconfig.Encode(cfg, false); err != nil {
		return sdk.Bootstrap{}, err
	}
	if len(b.UserData) > maxPlainUserData {
		if b.UserData, err = machineconfig.Encode(cfg, true); err != nil {
			return sdk.Bootstrap{}, err
		}
	}
	return b, nil
}

// verifyByServiceName makes a kubeconfig verify the API server's
// certificate for the name "kubernetes" instead of the address it dials.
// A machine booting k2 OS learns its address by DHCP after the cluster's
// PKI was made, so `k2 server` issues its serving certificate on start for
// the addresses it then has (plus the in-cluster names); the deploying host
// may reach it through an address the machine does not have (a cloud's
// public IP, a NAT port forward), which the certificate cannot name. The
// name "kubernetes" is in every serving certificate k2 issues, signed by
// the cluster CA only this deploy holds, so the check is as strict.
func verifyByServiceName(path string) error {
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return err
	}
	for _, c := range cfg.Clusters {
		c.TLSServerName = "kubernetes"
	}
	return clientcmd.WriteToFile(*cfg, path)
}
