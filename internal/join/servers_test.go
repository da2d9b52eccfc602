package join_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"k2.dev/k2/internal/join"
	"k2.dev/k2/provision/pki"
)

// fakeServer records what the server routes ask; it stands for the
// control plane, whose real hooks the HA e2e tests exercise.
type fakeServer struct {
	added   []join.EtcdJoinRequest
	removed []string
	inits   []join.ClusterInitRequest
	sqlite  bool
}

func (f *fakeServer) Info(context.Context) (*join.ServerInfo, error) {
	return &join.ServerInfo{Name: "s0", Datastore: "etcd", Healthy: true, Etcd: &join.EtcdInfo{Member: "s0", IsLeader: true}}, nil
}

func (f *fakeServer) Servers(context.Context) ([]join.ServerEndpoint, error) {
	return []join.ServerEndpoint{{Name: "s0", APIURL: "https://127.0.0.1:1", JoinURL: "https://127.0.0.1:2"}}, nil
}

func (f *fakeServer) AddEtcdMember(_ context.Context, r join.EtcdJoinRequest) (*join.EtcdJoin, error) {
	if f.sqlite {
		return nil, fmt.Errorf("this server runs SQLite: %w", join.ErrNotSupported)
	}
	f.added = append(f.added, r)
	return &join.EtcdJoin{InitialCluster: "s0=https://127.0.0.1:3," + r.Name + "=" + r.PeerURL, CACert: "ca", CAKey: "key"}, nil
}

func (f *fakeServer) RemoveEtcdMember(_ context.Context, name string) error {
	f.removed = append(f.removed, name)
	return nil
}

func (f *fakeServer) ClusterInit(_ context.Context, r join.ClusterInitRequest) error {
	f.inits = append(f.inits, r)
	return nil
}

func (f *fakeServer) Backup(_ context.Context, w io.Writer) error {
	_, err := w.Write([]byte("archive"))
	return err
}

// TestServerRoutes: the admin certificate may use every server route; a
// node certificate may list the servers and nothing else; a certificate of
// another cluster and no certificate are refused; an operation the server
// cannot do answers 409, which the client turns into ErrNotSupported.
func TestServerRoutes(t *testing.T) {
	p, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{}
	srv := httptest.NewUnstartedServer(join.NewHandler(join.ServerConfig{CACert: p.CA, CAKey: p.CAKey, CAPEM: p.CAData, Server: f}))
	serving, _ := tls.LoadX509KeyPair(p.Path(pki.ServingCert), p.Path(pki.ServingKey))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()
	ctx := context.Background()

	adminCert, _ := tls.LoadX509KeyPair(p.Path(pki.AdminCert), p.Path(pki.AdminKey))
	admin, err := join.NewAdminClient(p.CAData, adminCert)
	if err != nil {
		t.Fatal(err)
	}
	info, err := admin.Info(ctx, srv.URL)
	if err != nil || info.Name != "s0" || !info.Etcd.IsLeader {
		t.Fatalf("Info: %+v %v", info, err)
	}
	j, err := admin.AddEtcdMember(ctx, srv.URL, join.EtcdJoinRequest{Name: "s1", PeerURL: "https://127.0.0.1:4"})
	if err != nil || !strings.Contains(j.InitialCluster, "s1=https://127.0.0.1:4") {
		t.Fatalf("AddEtcdMember: %+v %v", j, err)
	}
	if err := admin.RemoveEtcdMember(ctx, srv.URL, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := admin.ClusterInit(ctx, srv.URL, join.ClusterInitRequest{EtcdClientPort: 5, EtcdPeerPort: 6}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := admin.Backup(ctx, srv.URL, &b); err != nil || b.String() != "archive" {
		t.Fatalf("Backup: %q %v", b.String(), err)
	}
	if diff := cmp.Diff([]string{"s1"}, f.removed); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]join.ClusterInitRequest{{EtcdClientPort: 5, EtcdPeerPort: 6}}, f.inits); diff != "" {
		t.Error(diff)
	}
	f.sqlite = true
	if _, err := admin.AddEtcdMember(ctx, srv.URL, join.EtcdJoinRequest{Name: "s2", PeerURL: "https://127.0.0.1:7"}); !errors.Is(err, join.ErrNotSupported) {
		t.Errorf("AddEtcdMember on a SQLite server: %v, want ErrNotSupported", err)
	}

	node, _ := join.NewAdminClient(p.CAData, clientCert(t, p.CA, p.CAKey, "system:node:w1", "system:nodes"))
	if list, err := node.Servers(ctx, srv.URL); err != nil || len(list) != 1 {
		t.Errorf("a node listing servers: %v %v", list, err)
	}
	if _, err := node.Info(ctx, srv.URL); !errors.Is(err, join.ErrImageDenied) {
		t.Errorf("a node asking for admin info: %v, want denied", err)
	}
	if _, err := node.AddEtcdMember(ctx, srv.URL, join.EtcdJoinRequest{Name: "evil", PeerURL: "https://127.0.0.1:8"}); err == nil {
		t.Error("a node added an etcd member")
	}
	other, err := pki.Ensure(filepath.Join(t.TempDir(), "pki"), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	otherAdmin, _ := tls.LoadX509KeyPair(other.Path(pki.AdminCert), other.Path(pki.AdminKey))
	stranger, _ := join.NewAdminClient(p.CAData, otherAdmin)
	if _, err := stranger.Info(ctx, srv.URL); err == nil {
		t.Error("another cluster's admin certificate was accepted")
	}
	anon, _ := join.NewAdminClient(p.CAData, tls.Certificate{})
	if _, err := anon.Servers(ctx, srv.URL); err == nil {
		t.Error("an anonymous caller listed the servers")
	}
	if len(f.added) != 1 {
		t.Errorf("members added: %+v", f.added)
	}
}
