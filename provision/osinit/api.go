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

// apiServer is the API, HTTP on a unix socket only root can open:
//
//	GET  /status    Status as JSON
//	POST /poweroff  stop the children, sync, power off (as PID 1)
//	POST /reboot    stop the children, sync, reboot (as PID 1)
//	POST /stop      stop the children; k2 init exits (not PID 1)
//
// `k2 init status|poweroff|reboot|stop` are its client. A socket that
// cannot be made is a warning, not a failure: k2 init runs without its API.
type apiServer struct {
	r   *runner
	ln  net.Listener
	srv *http.Server
}

func (a *apiServer) Name() string { return "api" }

func (a *apiServer) Init(context.Context) error {
	sock := a.r.o.Socket
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		a.r.log.Warn("the k2 init API is not available", "socket", sock, "err", err)
		return nil
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		a.r.log.Warn("the k2 init API is not available", "socket", sock, "err", err)
		return nil
	}
	os.Chmod(sock, 0o600)
	a.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(a.r.status())
	})
	mux.HandleFunc("POST /{action}", func(w http.ResponseWriter, req *http.Request) {
		act, err := parseAction(req.PathValue("action"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if a.r.mach == nil && act != ActionStop {
			// Not PID 1: k2 init cannot power this machine off; it stops.
			act = ActionStop
		}
		a.r.requestShutdown(act)
		fmt.Fprintf(w, "%s requested\n", act)
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return nil
}

func (a *apiServer) Start(context.Context) error { return nil }

func (a *apiServer) Run(context.Context) error {
	if a.srv == nil {
		return nil
	}
	if err := a.srv.Serve(a.ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func (a *apiServer) Stop(context.Context) error {
	if a.srv == nil {
		return nil
	}
	a.srv.Close()
	os.Remove(a.r.o.Socket)
	return nil
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
