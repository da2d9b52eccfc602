package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Start starts the servers and returns once they listen; cancelling ctx
// stops them (in-flight HTTP requests get 5 s to finish).
func Start(ctx context.Context, opts Options) (*Server, error) {
	s := &Server{opts: opts, log: opts.Log, machines: map[string]*entry{}, tokens: map[string]string{}, ipMAC: map[string]string{}, ipxeServed: map[string]bool{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPAddr == "" {
		return nil, errors.New("netboot: no HTTP address")
	}
	ln, err := net.Listen("tcp", opts.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("boot server: listening for HTTP on %s: %w", opts.HTTPAddr, err)
	}
	s.httpAddr = ln.Addr()
	hs := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	s.stop = append(s.stop, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if hs.Shutdown(sctx) != nil {
			_ = hs.Close()
		}
		// Shutdown closes only listeners Serve has begun tracking: a
		// server closed right after Start would keep its address until
		// the Serve goroutine ran.
		_ = ln.Close()
	})
	if opts.TFTPAddr != "" {
		if err := s.startTFTP(); err != nil {
			s.Close()
			return nil, err
		}
	}
	if opts.DHCPAddr != "" || opts.PXEAddr != "" {
		if err := s.startDHCP(); err != nil {
			s.Close()
			return nil, err
		}
	}
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	return s, nil
}

// Close stops the servers now.
func (s *Server) Close() {
	s.mu.Lock()
	stop := s.stop
	s.stop = nil
	s.mu.Unlock()
	for i := len(stop) - 1; i >= 0; i-- {
		stop[i]()
	}
}
