package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/pki"
)

// ImagesDir is the directory under the data dir where the join endpoint
// keeps vendored image archives uploaded at deploy.
const ImagesDir = "images"

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
	images, err := join.OpenImageStore(filepath.Join(s.cfg.DataDir, ImagesDir))
	if err != nil {
		ln.Close()
		return err
	}
	apiURL := "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.Port))
	srv := &http.Server{
		Handler: join.NewHandler(join.ServerConfig{
			CACert: s.PKI.CA, CAKey: s.PKI.CAKey, CAPEM: s.PKI.CAData, APIServerURL: apiURL,
			Tokens: NewTokenStore(s.cfg.DataDir), Logger: s.log.With("component", "join"), Images: images,
		}),
		// Client certificates are asked for, not required: the image
		// routes check them (admin to upload, nodes to read), the join
		// route authenticates by token alone.
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert},
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
