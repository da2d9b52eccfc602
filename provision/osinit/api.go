package osinit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The API is HTTP on a unix socket only root can open:
//
//	GET  /status    Status as JSON
//	POST /poweroff  stop the children, sync, power off (as PID 1)
//	POST /reboot    stop the children, sync, reboot (as PID 1)
//	POST /stop      stop the children; k2 init exits (not PID 1)
//
// `k2 init status|poweroff|reboot` are its client.
func (r *runner) serveAPI(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(r.o.Socket), 0o700); err != nil {
		return nil, err
	}
	os.Remove(r.o.Socket)
	ln, err := net.Listen("unix", r.o.Socket)
	if err != nil {
		return nil, err
	}
	os.Chmod(r.o.Socket, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.status())
	})
	mux.HandleFunc("POST /{action}", func(w http.ResponseWriter, req *http.Request) {
		a, err := parseAction(req.PathValue("action"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if r.mach == nil && a != ActionStop {
			// Not PID 1: k2 init cannot power this machine off; it stops.
			a = ActionStop
		}
		r.requestShutdown(a)
		fmt.Fprintf(w, "%s requested\n", a)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	// The listener outlives runCtx: a status request during shutdown is
	// still answered; the caller closes it when Run returns.
	_ = ctx
	return func() { srv.Close(); os.Remove(r.o.Socket) }, nil
}

// apiClient talks to a running k2 init's socket.
func apiClient(socket string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}}}
}

// GetStatus asks the k2 init listening on socket for its status.
func GetStatus(ctx context.Context, socket string) (*Status, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://k2-init/status", nil)
	resp, err := apiClient(socket).Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking k2 init on %s: %w", socket, unwrapURLError(err))
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("reading k2 init's status: %w", err)
	}
	return &s, nil
}

// Request asks the k2 init listening on socket for an action (poweroff,
// reboot, stop); it returns once the request is accepted.
func Request(ctx context.Context, socket, action string) error {
	if _, err := parseAction(action); err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://k2-init/"+action, nil)
	resp, err := apiClient(socket).Do(req)
	if err != nil {
		return fmt.Errorf("asking k2 init on %s: %w", socket, unwrapURLError(err))
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("k2 init refused %s: %s", action, strings.TrimSpace(string(b)))
	}
	return nil
}
