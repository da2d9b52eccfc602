package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// LogReader is implemented by runtimes that can return a container's log.
type LogReader interface {
	ContainerLogs(ctx context.Context, namespace, pod, container string) (io.ReadCloser, error)
}

// ContainerLogs implements LogReader: sim containers have no output, so
// the "log" says why.
func (r *SimRuntime) ContainerLogs(_ context.Context, namespace, pod, container string) (io.ReadCloser, error) {
	msg := fmt.Sprintf("k2 sim runtime: pod %s/%s runs no containers (container %q is simulated), so it has no logs.\n"+
		"Nodes labelled k2.dev/runtime=sim (the local provider) only simulate pods; deploy to a real provider to run them.\n",
		namespace, pod, container)
	return io.NopCloser(strings.NewReader(msg)), nil
}

// kubeletAPI serves the small part of the kubelet API the apiserver calls
// for kubectl logs (from the runtime, when it is a LogReader) and answers
// exec, attach and port-forward with a clear refusal. It listens on all
// addresses on a free port, with a self-signed certificate (the apiserver
// does not verify kubelet certificates unless given a kubelet CA). It is
// the first component of a sim node (simnode.go).
type kubeletAPI struct {
	rt  atomic.Value // Runtime, once the agent has made it
	srv *http.Server
	ln  net.Listener
}

// runtime returns the runtime, or nil before it exists.
func (k *kubeletAPI) runtime() Runtime {
	rt, _ := k.rt.Load().(Runtime)
	return rt
}

// Name names the component.
func (k *kubeletAPI) Name() string { return "kubelet-api" }

// Init listens on a free port with a fresh self-signed certificate.
func (k *kubeletAPI) Init(context.Context) error {
	cert, err := selfSigned()
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", ":0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return fmt.Errorf("listening for the kubelet API: %w", err)
	}
	k.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.logs)
	refuse := func(w http.ResponseWriter, r *http.Request) {
		name := "k2 agent's"
		if rt := k.runtime(); rt != nil {
			name = rt.Name()
		}
		http.Error(w, fmt.Sprintf("the %s runtime cannot %s: no container runs on this node", name, strings.Split(strings.Trim(r.URL.Path, "/"), "/")[0]), http.StatusNotImplemented)
	}
	for _, p := range []string{"/exec/", "/attach/", "/portForward/", "/run/"} {
		mux.HandleFunc(p, refuse)
	}
	k.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

// Start does nothing: Run serves.
func (k *kubeletAPI) Start(context.Context) error { return nil }

// Run serves until Stop closes the server.
func (k *kubeletAPI) Run(context.Context) error {
	if err := k.srv.Serve(k.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Port is where the API listens (the node's kubelet endpoint).
func (k *kubeletAPI) Port() int { return k.ln.Addr().(*net.TCPAddr).Port }

// Stop closes the listener and every connection.
func (k *kubeletAPI) Stop(context.Context) error {
	if k.srv == nil {
		return nil
	}
	return k.srv.Close()
}

func (k *kubeletAPI) logs(w http.ResponseWriter, r *http.Request) {
	lr, ok := k.runtime().(LogReader)
	if !ok {
		http.Error(w, "this runtime has no logs", http.StatusNotImplemented)
		return
	}
	rc, err := lr.ContainerLogs(r.Context(), r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain")
	if _, err := io.Copy(w, rc); err != nil && !errors.Is(err, context.Canceled) {
		return
	}
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "k2-agent"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
