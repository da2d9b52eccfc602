// Package devreg serves a development OCI registry in-process
// (go-containerregistry's pkg/registry), for k2 registry serve and demos.
// Content lives in memory and is lost when it stops. It has no
// authentication and no TLS: bind it to loopback.
package devreg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Serve listens on addr and serves a registry until ctx is done, then shuts
// down gracefully (5 s, then hard). ready, if not nil, is called with the
// listening address once requests are accepted. Requests are logged to log
// at debug level; nil discards them.
func Serve(ctx context.Context, addr string, log *slog.Logger, ready func(net.Addr)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(slog.NewLogLogger(log.Handler(), slog.LevelDebug)), registry.WithReferrersSupport(true)),
		ReadHeaderTimeout: 30 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
