package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/pki"
)

// serveJoin serves the join endpoint over TLS with the apiserver's serving
// certificate until ctx ends.
func (s *Server) serveJoin(ctx context.Context, port int) error {
	cert, err := tls.LoadX509KeyPair(s.PKI.Path(pki.ServingCert), s.PKI.Path(pki.ServingKey))
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("join endpoint: %w; pick another --join-port", err)
	}
	apiURL := "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.Port))
	srv := &http.Server{
		Handler: join.NewHandler(join.ServerConfig{
			CACert: s.PKI.CA, CAKey: s.PKI.CAKey, CAPEM: s.PKI.CAData, APIServerURL: apiURL,
			Tokens: NewTokenStore(s.cfg.DataDir), Logger: s.log.With("component", "join"),
		}),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	s.log.Info("join endpoint ready", "addr", ln.Addr().String())
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
