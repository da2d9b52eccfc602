package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/internal/usererr"
	"k2.dev/k2/provision/pki"
)

// ImagesDir is the directory under the data dir where the join endpoint
// keeps vendored image archives uploaded at deploy.
const ImagesDir = "images"

// joinServer is the component that serves the join endpoint over TLS with
// the apiserver's serving certificate: agents trade a token for node
// credentials there, and fetch the images vendored at deploy.
type joinServer struct {
	s    *Server
	port int
	ln   net.Listener
	srv  *http.Server
}

func (*joinServer) Name() string               { return "join-server" }
func (*joinServer) Init(context.Context) error { return nil }

// Start listens, so a port in use fails the start and names the component.
func (j *joinServer) Start(context.Context) error {
	s := j.s
	cert, err := tls.LoadX509KeyPair(s.PKI.Path(pki.ServingCert), s.PKI.Path(pki.ServingKey))
	if err != nil {
		return err
	}
	images, err := join.OpenImageStore(filepath.Join(s.cfg.DataDir, ImagesDir))
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(s.cfg.BindAddress, strconv.Itoa(j.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return usererr.Wrap(usererr.KindFailure, err, "pick another --join-port")
	}
	apiURL := "https://" + net.JoinHostPort(s.cfg.AdvertiseAddress, strconv.Itoa(s.cfg.Port))
	j.ln = ln
	j.srv = &http.Server{
		Handler: join.NewHandler(join.ServerConfig{
			CACert: s.PKI.CA, CAKey: s.PKI.CAKey, CAPEM: s.PKI.CAData, APIServerURL: apiURL,
			Tokens: NewTokenStore(s.cfg.DataDir), Logger: s.log.With("component", "join"), Images: images,
			Server: serverHooks{s},
		}),
		// Client certificates are asked for, not required: the image
		// routes check them (admin to upload, nodes to read), the join
		// route authenticates by token alone.
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, ClientAuth: tls.RequestClientCert},
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.log.Info("join endpoint ready", "addr", ln.Addr().String())
	return nil
}

func (j *joinServer) Run(context.Context) error {
	if err := j.srv.ServeTLS(j.ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Stop closes the listener and gives requests in flight 2 s.
func (j *joinServer) Stop(ctx context.Context) error {
	if j.srv == nil {
		if j.ln != nil {
			return j.ln.Close()
		}
		return nil
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := j.srv.Shutdown(sctx); err != nil {
		return j.srv.Close()
	}
	return nil
}
