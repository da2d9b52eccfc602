package metal

import (
	"context"
	"log/slog"
	"sync"

	"k2.dev/k2/internal/netboot"
)

// bootServers shares one running boot server between the concurrent
// Creates of this plugin process (k2 creates machines in parallel, and a
// boot address can be listened on once): the first Create starts it, the
// last one to finish stops it.
type bootServers struct {
	mu    sync.Mutex
	srv   *netboot.Server
	key   netboot.Options
	users int
	stop  context.CancelFunc
}

// acquire returns the running server for opts, starting it if needed, and
// a release func.
func (b *bootServers) acquire(opts netboot.Options, log *slog.Logger) (*netboot.Server, func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil && (b.key.HTTPAddr != opts.HTTPAddr || b.key.TFTPAddr != opts.TFTPAddr || b.key.DHCPAddr != opts.DHCPAddr) {
		return nil, nil, errorf("a boot server for another configuration (%s) is running in this process", b.key.HTTPAddr)
	}
	if b.srv == nil {
		ctx, cancel := context.WithCancel(context.Background())
		opts.Log = log
		srv, err := netboot.Start(ctx, opts)
		if err != nil {
			cancel()
			return nil, nil, err
		}
		log.Info("boot server listening", "http", srv.URL(), "tftp", srv.TFTPAddr(), "proxyDHCP", srv.DHCPAddr())
		b.srv, b.key, b.stop = srv, opts, cancel
	}
	b.users++
	srv := b.srv
	var once sync.Once
	return srv, func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			b.users--
			if b.users == 0 {
				for _, l := range srv.Summary() {
					log.Info("boot stages", "machine", l)
				}
				b.stop()
				srv.Close()
				b.srv = nil
			}
		})
	}, nil
}
