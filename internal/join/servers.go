package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Server routes of the join endpoint, served when ServerConfig.Server is
// set: what servers of one cluster, and k2 on the deploying host, ask of a
// server (see servers.go in provision/controlplane for the other side).
//
//	GET    /v1/server                 admin: ServerInfo, this server's view
//	GET    /v1/servers                reader: []ServerEndpoint, every server
//	POST   /v1/etcd/members           admin: add a member (EtcdJoinRequest → EtcdJoin)
//	DELETE /v1/etcd/members/{name}    admin: remove a member
//	POST   /v1/datastore/cluster-init admin: move SQLite into a new embedded etcd (ClusterInitRequest)
//	GET    /v1/backup                 admin: a backup archive (k2 backup's format)
//	PUT    /v1/restore                admin: a backup archive, while the server awaits one
//
// Admin is a client certificate with O=system:masters (the cluster's
// admin.crt, which every server of the cluster holds); a reader is an admin
// or a node.

// ServerHooks are what the server routes call; the control plane implements
// them. A method returning an error wrapping ErrNotSupported answers 409.
type ServerHooks interface {
	Info(ctx context.Context) (*ServerInfo, error)
	Servers(ctx context.Context) ([]ServerEndpoint, error)
	AddEtcdMember(ctx context.Context, req EtcdJoinRequest) (*EtcdJoin, error)
	RemoveEtcdMember(ctx context.Context, name string) error
	ClusterInit(ctx context.Context, req ClusterInitRequest) error
	Backup(ctx context.Context, w io.Writer) error
}

// ErrNotSupported says a server cannot do what a server route asks in its
// present state (an etcd route on a SQLite server, say).
var ErrNotSupported = errors.New("not supported by this server")

// ServerEndpoint is where one server of the cluster answers.
type ServerEndpoint struct {
	Name    string `json:"name"`
	APIURL  string `json:"apiURL"`
	JoinURL string `json:"joinURL"`
	// Seen is when the server last said it is alive (its lease).
	Seen time.Time `json:"seen,omitzero"`
}

// ServerInfo is a server's view of itself and its datastore.
type ServerInfo struct {
	Name    string `json:"name"`
	APIURL  string `json:"apiURL"`
	JoinURL string `json:"joinURL"`
	// Datastore is sqlite, etcd (embedded) or external.
	Datastore string `json:"datastore"`
	// Endpoint is the external datastore, password hidden.
	Endpoint string    `json:"endpoint,omitempty"`
	Etcd     *EtcdInfo `json:"etcd,omitempty"`
	// Healthy: the datastore answers (for etcd, a quorum read went through).
	Healthy bool   `json:"healthy"`
	Error   string `json:"error,omitempty"`
	// Leading lists the leader-elected controllers that run on this server.
	Leading []string `json:"leading,omitempty"`
}

// EtcdInfo is an embedded etcd member's view of its cluster.
type EtcdInfo struct {
	Member    string       `json:"member"`
	ID        string       `json:"id"`
	Leader    string       `json:"leader,omitempty"`
	IsLeader  bool         `json:"isLeader"`
	Learner   bool         `json:"learner,omitempty"`
	DBBytes   int64        `json:"dbBytes"`
	RaftIndex uint64       `json:"raftIndex"`
	Members   []EtcdMember `json:"members,omitempty"`
}

// EtcdMember is one member of an embedded etcd cluster.
type EtcdMember struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	PeerURLs []string `json:"peerURLs"`
	Learner  bool     `json:"learner,omitempty"`
	Leader   bool     `json:"leader,omitempty"`
	Started  bool     `json:"started"`
}

// EtcdJoinRequest asks a server to add a member to its etcd cluster.
type EtcdJoinRequest struct {
	Name    string `json:"name"`
	PeerURL string `json:"peerURL"`
}

// EtcdJoin is what a joining member starts with: the cluster as the new
// member must name it, and the cluster's etcd CA, which its peer and
// client certificates must chain to.
type EtcdJoin struct {
	InitialCluster string `json:"initialCluster"`
	CACert         string `json:"caCert"` // PEM
	CAKey          string `json:"caKey"`  // PEM
}

// ClusterInitRequest asks a SQLite server to move its objects into a new
// embedded etcd on these ports and continue as its first member.
type ClusterInitRequest struct {
	EtcdClientPort int `json:"etcdClientPort"`
	EtcdPeerPort   int `json:"etcdPeerPort"`
}

func serverRoutes(mux *http.ServeMux, cfg ServerConfig) {
	if cfg.Server == nil {
		return
	}
	roots := x509.NewCertPool()
	roots.AddCert(cfg.CACert)
	h := cfg.Server
	auth := func(need access, next func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !allowed(w, r, cfg, roots, need, "server route",
				"authentication required: present the cluster's admin client certificate",
				func(who string) string {
					return fmt.Sprintf("%s may not %s %s; that needs the cluster admin certificate (O=system:masters)", who, r.Method, r.URL.Path)
				}) {
				return
			}
			if err := next(w, r); err != nil {
				code := http.StatusInternalServerError
				if errors.Is(err, ErrNotSupported) {
					code = http.StatusConflict
				}
				cfg.Logger.Warn("server route failed", "method", r.Method, "path", r.URL.Path, "err", err)
				httpError(w, code, err.Error())
			}
		}
	}
	reply := func(w http.ResponseWriter, v any) error {
		w.Header().Set("Content-Type", "application/json")
		return json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /v1/server", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) error {
		info, err := h.Info(r.Context())
		if err != nil {
			return err
		}
		return reply(w, info)
	}))
	mux.HandleFunc("GET /v1/servers", auth(accessRead, func(w http.ResponseWriter, r *http.Request) error {
		list, err := h.Servers(r.Context())
		if err != nil {
			return err
		}
		return reply(w, list)
	}))
	mux.HandleFunc("POST /v1/etcd/members", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) error {
		var req EtcdJoinRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Name == "" || req.PeerURL == "" {
			httpError(w, http.StatusBadRequest, "want a JSON body with name and peerURL")
			return nil
		}
		j, err := h.AddEtcdMember(r.Context(), req)
		if err != nil {
			return err
		}
		cfg.Logger.Info("etcd member added", "member", req.Name, "peer", req.PeerURL, "remote", r.RemoteAddr)
		return reply(w, j)
	}))
	mux.HandleFunc("DELETE /v1/etcd/members/{name}", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) error {
		if err := h.RemoveEtcdMember(r.Context(), r.PathValue("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.HandleFunc("POST /v1/datastore/cluster-init", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) error {
		var req ClusterInitRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, "want a JSON body with etcdClientPort and etcdPeerPort")
			return nil
		}
		if err := h.ClusterInit(r.Context(), req); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}))
	mux.HandleFunc("GET /v1/backup", auth(accessAdmin, func(w http.ResponseWriter, r *http.Request) error {
		// Written to a buffer first: a failure half way must be an error
		// status, not a truncated archive that looks whole.
		var buf bytes.Buffer
		if err := h.Backup(r.Context(), &buf); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
		_, err := io.Copy(w, &buf)
		return err
	}))
}

// AdminClient talks to the server routes of join endpoints with the
// cluster's admin certificate, verifying servers against the cluster CA.
type AdminClient struct {
	hc *http.Client
}

// NewAdminClient returns a client presenting cert (admin.crt/admin.key, or a
// node certificate for the reader routes).
func NewAdminClient(caPEM []byte, cert tls.Certificate) (*AdminClient, error) {
	hc, err := imageClient(caPEM, cert)
	if err != nil {
		return nil, err
	}
	return &AdminClient{hc: hc}, nil
}

func (c *AdminClient) do(ctx context.Context, method, u string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := serverStatusErr(resp); err != nil {
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// serverStatusErr is statusErr for the server routes: 409 wraps
// ErrNotSupported.
func serverStatusErr(resp *http.Response) error {
	if resp.StatusCode == http.StatusConflict {
		var e struct{ Error string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
		return fmt.Errorf("%w: %s", ErrNotSupported, e.Error)
	}
	return statusErr(resp)
}

// Info asks the server at joinURL about itself.
func (c *AdminClient) Info(ctx context.Context, joinURL string) (*ServerInfo, error) {
	var info ServerInfo
	if err := c.do(ctx, http.MethodGet, joinURL+"/v1/server", nil, &info); err != nil {
		return nil, fmt.Errorf("asking %s about itself: %w", joinURL, err)
	}
	return &info, nil
}

// Servers asks the server at joinURL for every server of its cluster.
func (c *AdminClient) Servers(ctx context.Context, joinURL string) ([]ServerEndpoint, error) {
	var list []ServerEndpoint
	if err := c.do(ctx, http.MethodGet, joinURL+"/v1/servers", nil, &list); err != nil {
		return nil, fmt.Errorf("asking %s for the cluster's servers: %w", joinURL, err)
	}
	return list, nil
}

// AddEtcdMember asks the server at joinURL to add a member to its etcd cluster.
func (c *AdminClient) AddEtcdMember(ctx context.Context, joinURL string, req EtcdJoinRequest) (*EtcdJoin, error) {
	var j EtcdJoin
	if err := c.do(ctx, http.MethodPost, joinURL+"/v1/etcd/members", req, &j); err != nil {
		return nil, fmt.Errorf("joining the etcd cluster of %s: %w", joinURL, err)
	}
	return &j, nil
}

// RemoveEtcdMember asks the server at joinURL to remove member name.
func (c *AdminClient) RemoveEtcdMember(ctx context.Context, joinURL, name string) error {
	if err := c.do(ctx, http.MethodDelete, joinURL+"/v1/etcd/members/"+url.PathEscape(name), nil, nil); err != nil {
		return fmt.Errorf("removing etcd member %s through %s: %w", name, joinURL, err)
	}
	return nil
}

// ClusterInit asks the SQLite server at joinURL to move into a new etcd.
func (c *AdminClient) ClusterInit(ctx context.Context, joinURL string, req ClusterInitRequest) error {
	if err := c.do(ctx, http.MethodPost, joinURL+"/v1/datastore/cluster-init", req, nil); err != nil {
		return fmt.Errorf("asking %s to move its datastore into etcd: %w", joinURL, err)
	}
	return nil
}

// Backup copies a backup of the server at joinURL to w.
func (c *AdminClient) Backup(ctx context.Context, joinURL string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, joinURL+"/v1/backup", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("backing up %s: %w", joinURL, err)
	}
	defer resp.Body.Close()
	if err := serverStatusErr(resp); err != nil {
		return fmt.Errorf("backing up %s: %w", joinURL, err)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("backing up %s: %w", joinURL, err)
	}
	return nil
}

// Restore uploads the backup archive r to the server at joinURL, which
// waits for one before its first start ('k2 server --await-restore').
func (c *AdminClient) Restore(ctx context.Context, joinURL string, r io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, joinURL+RestorePath, io.NopCloser(r))
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/gzip")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("restoring onto %s: %w", joinURL, err)
	}
	defer resp.Body.Close()
	if err := serverStatusErr(resp); err != nil {
		return fmt.Errorf("restoring onto %s: %w", joinURL, err)
	}
	return nil
}

// RestorePath is the route a server awaiting a restore serves.
const RestorePath = "/v1/restore"

// RestoreHandler serves PUT /v1/restore for a server that waits for a
// backup before its first start: an admin uploads the archive, restore
// unpacks it, and the handler answers once it is in place.
func RestoreHandler(cfg ServerConfig, restore func(ctx context.Context, r io.Reader) error) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = discard()
	}
	roots := x509.NewCertPool()
	roots.AddCert(cfg.CACert)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+RestorePath, func(w http.ResponseWriter, r *http.Request) {
		got, who, err := caller(r, cfg, roots)
		var se *statusError
		switch {
		case errors.As(err, &se):
			httpError(w, se.code, se.msg)
			return
		case got < accessAdmin:
			httpError(w, http.StatusForbidden, strings.TrimSpace(who+" may not restore; that needs the cluster admin certificate (O=system:masters)"))
			return
		}
		if err := restore(r.Context(), r.Body); err != nil {
			cfg.Logger.Error("restore failed", "err", err)
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpError(w, http.StatusServiceUnavailable, "this server waits for a backup to restore (PUT "+RestorePath+") before it starts")
	})
	return mux
}
