package controlplane

import (
	"context"
	"fmt"
	"net/netip"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"k2.dev/k2/internal/noderoute"
)

// clusterRoutes is the component that, before the apiserver starts, drops
// on this machine the traffic to the cluster's pod and service ranges that
// no node route claims: with --enable-aggregator-routing the apiserver
// dials pod addresses, which the node routes (runNodeRoutes) carry, and
// nothing of the cluster may leave through the default route. Stop removes
// the blackholes.
type clusterRoutes struct {
	s     *Server
	holes []netip.Prefix
}

func (*clusterRoutes) Name() string { return "cluster-routes" }

func (r *clusterRoutes) Init(context.Context) error {
	for flag, cidr := range map[string]string{"--cluster-cidr": r.s.cfg.ClusterCIDR, "--service-cidr": r.s.cfg.ServiceCIDR} {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			return fmt.Errorf("%s %s: %w", flag, cidr, err)
		}
		r.holes = append(r.holes, p)
	}
	return nil
}

func (r *clusterRoutes) Start(context.Context) error {
	if err := noderoute.Blackhole(r.holes...); err != nil {
		return fmt.Errorf("%w; cluster routes need CAP_NET_ADMIN on a machine that runs only this server (turn them off with --cluster-routes=false)", err)
	}
	r.s.log.Info("cluster ranges routed nowhere but through their nodes", "blackholes", r.holes)
	return nil
}

func (r *clusterRoutes) Stop(context.Context) error {
	noderoute.RemoveBlackholes(r.holes...)
	return nil
}

// runNodeRoutes keeps a route to each node's pod range through the node
// until ctx ends, then removes them.
func (s *Server) runNodeRoutes(ctx context.Context) error {
	cfg := rest.CopyConfig(s.rest)
	cfg.UserAgent = "k2-server/node-routes"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	return noderoute.Run(ctx, cs, noderoute.Options{RemoveOnStop: true, Log: s.log.With("component", "node-routes")})
}
