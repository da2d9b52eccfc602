package controlplane

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"k2.dev/k2/provision/pki"
)

// identity is the component that gives the server its cluster identity at
// Init: the seed from `k2 deploy` unpacked, the PKI made or completed, the
// admin, controller-manager and scheduler kubeconfigs written.
type identity struct{ s *Server }

func (*identity) Name() string { return "pki" }

func (c *identity) Init(context.Context) error {
	s, cfg := c.s, c.s.cfg
	if err := applySeed(cfg.DataDir, cfg.Seed); err != nil {
		return err
	}
	svcIP, err := firstIP(cfg.ServiceCIDR)
	if err != nil {
		return fmt.Errorf("--service-cidr %s: %w", cfg.ServiceCIDR, err)
	}
	s.PKI, err = pki.Ensure(filepath.Join(cfg.DataDir, "pki"), pki.Options{SANs: append(cfg.TLSSANs, cfg.AdvertiseAddress), ServiceIP: svcIP})
	if err != nil {
		return fmt.Errorf("preparing certificates: %w", err)
	}
	s.URL = "https://" + net.JoinHostPort(localHost(cfg.BindAddress), strconv.Itoa(cfg.Port))
	return s.writeKubeconfigs()
}

func (*identity) Start(context.Context) error { return nil }
func (*identity) Stop(context.Context) error  { return nil }
