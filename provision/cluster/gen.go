package cluster

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k2.dev/k2/internal/atomicfile"
	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/controlplane"
	"k2.dev/k2/provision/machineconfig"
	"k2.dev/k2/provision/pki"
)

// GenOptions configure GenerateMachineConfigs.
type GenOptions struct {
	// ServerAddress is where nodes and the admin reach the control plane:
	// its fixed address (static, or a DHCP reservation) or a DNS name.
	ServerAddress string
	// ControlPlaneName and WorkerPrefix name the nodes (control-plane,
	// worker-1…).
	ControlPlaneName string
	Workers          int
	// TLSSANs are extra names for the serving certificate (the address
	// is always included).
	TLSSANs []string
	// DataDisk is "auto", a device path or "" for none.
	DataDisk string
	// Runtime is the agents' runtime (kubelet by default).
	Runtime string
	// Network is given to every machine as is.
	Network machineconfig.Network
}

// GenResult lists what GenerateMachineConfigs wrote.
type GenResult struct {
	Dir          string   `json:"dir"`
	ControlPlane string   `json:"controlPlane"`
	Workers      []string `json:"workers"`
	Kubeconfig   string   `json:"kubeconfig"`
	Server       string   `json:"server"`
}

// GenerateMachineConfigs makes a cluster identity in dir/cluster (kept on
// a re-run, so more workers can be added later) and a machine config per
// machine: dir/control-plane.yaml serving the identity, dir/worker-N.yaml
// joining it, and an admin kubeconfig. For machines installed without a
// provider (a USB stick, a hand-made VM), like `talosctl gen config`.
func GenerateMachineConfigs(dir string, o GenOptions) (*GenResult, error) {
	if o.ServerAddress == "" {
		return nil, errors.New("the control plane's address is required")
	}
	if o.ControlPlaneName == "" {
		o.ControlPlaneName = "control-plane"
	}
	cdir := filepath.Join(dir, "cluster")
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, err
	}
	sans := append([]string{o.ServerAddress}, o.TLSSANs...)
	if _, err := pki.Ensure(filepath.Join(cdir, "pki"), pki.Options{SANs: sans, ServiceIP: net.ParseIP("10.43.0.1")}); err != nil {
		return nil, fmt.Errorf("creating the cluster PKI: %w", err)
	}
	tokFile := filepath.Join(cdir, "join-token")
	var tok string
	if b, err := os.ReadFile(tokFile); err == nil {
		tok = strings.TrimSpace(string(b))
	} else {
		t, _, err := controlplane.CreateToken(cdir, 0, "k2 os config gen")
		if err != nil {
			return nil, err
		}
		tok = t.String()
		if err := atomicfile.Write(tokFile, []byte(tok+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	parsed, err := join.Parse(tok)
	if err != nil {
		return nil, err
	}
	seed, err := controlplane.MakeSeed(cdir)
	if err != nil {
		return nil, err
	}
	server := "https://" + net.JoinHostPort(o.ServerAddress, strconv.Itoa(machineconfig.DefaultPort))
	res := &GenResult{Dir: dir, Server: server}
	base := func(role, name string) *machineconfig.Config {
		c := &machineconfig.Config{APIVersion: machineconfig.APIVersion, Kind: machineconfig.Kind, Role: role, NodeName: name,
			Token: tok, CAHash: parsed.CAHash, Runtime: o.Runtime, Network: o.Network}
		if o.DataDisk != "" {
			c.DataDisk = &machineconfig.DataDisk{Device: o.DataDisk}
		}
		return c
	}
	write := func(name string, c *machineconfig.Config) (string, error) {
		if _, err := c.Validate(); err != nil {
			return "", err
		}
		b, err := machineconfig.Encode(c, false)
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, name)
		return p, atomicfile.Write(p, b, 0o600)
	}
	cp := base(machineconfig.RoleControlPlane, o.ControlPlaneName)
	cp.ControlPlane = &machineconfig.ControlPlane{Identity: base64.StdEncoding.EncodeToString(seed), TLSSANs: sans}
	if res.ControlPlane, err = write("control-plane.yaml", cp); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Workers; i++ {
		w := base(machineconfig.RoleWorker, fmt.Sprintf("worker-%d", i))
		w.Server = server
		p, err := write(fmt.Sprintf("worker-%d.yaml", i), w)
		if err != nil {
			return nil, err
		}
		res.Workers = append(res.Workers, p)
	}
	res.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	p := filepath.Join(cdir, "pki")
	ca, err := os.ReadFile(filepath.Join(p, pki.CACert))
	if err != nil {
		return nil, err
	}
	if err := controlplane.WriteKubeconfig(res.Kubeconfig, server, ca, filepath.Join(p, pki.AdminCert), filepath.Join(p, pki.AdminKey), "k2-admin"); err != nil {
		return nil, err
	}
	return res, verifyByServiceName(res.Kubeconfig)
}
