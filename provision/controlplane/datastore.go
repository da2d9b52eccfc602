package controlplane

import (
	"context"
	"time"

	"k2.dev/k2/state/datastore"
)

// datastoreComponent is kine in front of SQLite in the data dir (or the
// external database of Config.DatastoreEndpoint). Start returns once it
// serves the etcd API; Stop closes it, checkpointing the SQLite WAL.
type datastoreComponent struct{ s *Server }

func (*datastoreComponent) Name() string               { return "datastore" }
func (*datastoreComponent) Init(context.Context) error { return nil }

func (c *datastoreComponent) Start(ctx context.Context) error {
	s := c.s
	t := time.Now()
	ds, err := datastore.Start(ctx, datastore.Config{DataDir: s.cfg.DataDir, Endpoint: s.cfg.DatastoreEndpoint, Logger: s.log})
	if err != nil {
		return err
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
