package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"k2.dev/k2/state/datastore"
)

// datastoreComponent is kine in front of SQLite in the data dir, an etcd
// member embedded in the server (ha.go), or the external database of
// Config.DatastoreEndpoint. Start returns once it serves the etcd API (for
// etcd: once the member has a quorum); Stop closes it, checkpointing the
// SQLite WAL or handing etcd leadership to another member.
type datastoreComponent struct{ s *Server }

func (*datastoreComponent) Name() string               { return "datastore" }
func (*datastoreComponent) Init(context.Context) error { return nil }

func (c *datastoreComponent) Start(ctx context.Context) error {
	s := c.s
	t := time.Now()
	dc, err := s.datastoreConfig(ctx)
	if err != nil {
		return err
	}
	ds, err := datastore.Start(ctx, dc)
	if err != nil {
		return err
	}
	if ds.Mode == datastore.ModeEtcd {
		os.Remove(filepath.Join(s.cfg.DataDir, "db", clusterInitFile)) // done
	}
	s.ds = ds
	s.Timings.Datastore = time.Since(t)
	s.log.Debug("datastore ready", "servers", ds.EtcdServers, "took", s.Timings.Datastore)
	return nil
}

func (c *datastoreComponent) Stop(context.Context) error {
	if c.s.ds != nil {
		c.s.ds.Stop()
	}
	return nil
}
