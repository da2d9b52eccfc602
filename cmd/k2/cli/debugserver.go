package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"k2.dev/k2/internal/usererr"
)

// debugServer serves Go's pprof handlers on a loopback address (k2 server
// --debug-addr): a component, run by a component.Manager of its own
// before the control plane starts, so start-up can be profiled too.
type debugServer struct {
	addr string
	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
}

// newDebugServer checks that addr is a loopback address.
func newDebugServer(addr string, log *slog.Logger) (*debugServer, error) {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return nil, usererr.Usage("--debug-addr %q: give a loopback address such as 127.0.0.1:6060", addr)
	}
	return &debugServer{addr: addr, log: log}, nil
}

func (d *debugServer) Name() string { return "debug-server" }

// Init listens.
func (d *debugServer) Init(context.Context) error {
	ln, err := net.Listen("tcp", d.addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	d.ln, d.srv = ln, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

func (d *debugServer) Start(context.Context) error {
	d.log.Info("pprof listening", "addr", d.ln.Addr().String())
	return nil
}

// Run serves until Stop closes the server.
func (d *debugServer) Run(context.Context) error {
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Stop closes the listener and every connection.
func (d *debugServer) Stop(context.Context) error {
	if err := d.srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}
